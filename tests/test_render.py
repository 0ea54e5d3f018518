import html
import io
import itertools
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.text import Text

from charpoet.attribution_types import Attribution, SourceInfo, Span
from charpoet.render import palette, to_html, to_plain, to_rich

TEXT = "The cat sat on the mat. A dog <b>&</b> ran."
SOURCES = (
    SourceInfo("zero", 'Unused "Zero"'),
    SourceInfo("poe", "Poems & <Tales>"),
    SourceInfo("dogs", "A Book of Dogs"),
)


def make(text: str = TEXT, spans=None, sources=SOURCES, min_len: int = 4) -> Attribution:
    if spans is None:
        spans = (
            Span(4, 11, source=2, source_offset=1234, also_in=2),  # "cat sat" -> Dogs, cited first
            Span(15, 22, source=1, source_offset=7, also_in=1),  # "the mat" -> Poems
            Span(26, 38, source=2, source_offset=99),  # "dog <b>&</b>" -> Dogs again
        )
    return Attribution(text=text, spans=tuple(spans), sources=sources, min_len=min_len)


def many_sources(n: int = 14) -> Attribution:
    text = "".join(f"w{i:02d}-" for i in range(n))  # one 4-char span per source, reversed order
    sources = tuple(SourceInfo(f"s{i}", f"Source {i}") for i in range(n))
    spans = [Span(4 * k, 4 * k + 3, source=n - 1 - k, source_offset=k) for k in range(n)]
    return make(text, spans, sources, min_len=3)


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def pre_content(page: str) -> str:
    return re.search(r"<pre[^>]*>(.*)</pre>", page, re.S).group(1)


MARK = re.compile(r'<mark class="src-(\d+)" style="background:(#[0-9a-f]{6})[^"]*" title="([^"]*)">(.*?)</mark>', re.S)


# ---- palette ----------------------------------------------------------------------------------

def test_palette_distinct_and_deterministic():
    for n in (0, 1, 12, 13, 30):
        colours = palette(n)
        assert len(colours) == n == len(set(colours))
        assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colours)
        assert palette(n) == colours
    assert palette(30)[:12] == palette(12)
    with pytest.raises(ValueError):
        palette(-1)


def test_palette_first_twelve_differ_noticeably_and_are_light():
    colours = [rgb(c) for c in palette(12)]
    assert min(math.dist(a, b) for a, b in itertools.combinations(colours, 2)) > 40
    assert all(0.299 * r + 0.587 * g + 0.114 * b > 140 for r, g, b in colours)  # dark text stays readable


# ---- HTML -------------------------------------------------------------------------------------

def test_html_marks_match_spans_and_text_round_trips():
    att = make()
    page = to_html(att)
    marks = MARK.findall(page)
    assert page.count("<mark") == len(marks) == len(att.spans)
    assert [html.unescape(m[3]) for m in marks] == [att.text[s.start:s.end] for s in att.spans]
    assert html.unescape(re.sub(r"<[^>]+>", "", pre_content(page))) == att.text


def test_html_escapes_text_and_titles():
    page = to_html(make())
    assert "<b>" not in page and "</b>" not in page
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in page
    assert "<Tales>" not in page and "Poems &amp; &lt;Tales&gt;" in page


def test_html_titles_numbers_and_colours_follow_first_appearance():
    att = make()
    colours = palette(2)
    marks = MARK.findall(to_html(att))
    assert [(m[0], m[1]) for m in marks] == [("1", colours[0]), ("2", colours[1]), ("1", colours[0])]
    titles = [html.unescape(m[2]) for m in marks]
    assert titles[0] == "[1] A Book of Dogs — offset 1234 (also in 2 other sources)"
    assert titles[1] == "[2] Poems & <Tales> — offset 7 (also in 1 other source)"
    assert titles[2] == "[1] A Book of Dogs — offset 99"
    page = to_html(att)
    assert page.index("[1] A Book of Dogs") < page.index("[2] Poems &amp; &lt;Tales&gt;")
    assert "Zero" not in page  # uncited sources stay out of the legend


def test_html_legend_shares_and_summary():
    att = make()
    page = to_html(att)
    assert f"{(7 + 12) / len(TEXT):.1%}" in page and f"{7 / len(TEXT):.1%}" in page
    summary = re.search(r'<p class="charpoet-summary"[^>]*>(.*?)</p>', page).group(1)
    assert f"{att.copy_rate:.1%}" in summary and "3 spans" in summary
    assert "longest 12 chars from [1] A Book of Dogs" in summary and "min_len 4" in summary


def test_html_standalone_vs_fragment():
    att = make()
    page = to_html(att, title="Run <3>")
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page and "<style>" in page
    assert "<title>Run &lt;3&gt;</title>" in page
    fragment = to_html(att, standalone=False)
    assert fragment.startswith('<div class="charpoet-attribution"') and fragment.endswith("</div>")
    assert "<!DOCTYPE" not in fragment and "<style" not in fragment
    assert fragment in page
    assert att._repr_html_() == fragment


def test_html_no_spans():
    att = make("nothing <copied> here", spans=(), min_len=8)
    page = to_html(att)
    assert "<mark" not in page and "<li>" not in page
    assert "no verbatim copies of 8+ characters" in page
    assert html.unescape(re.sub(r"<[^>]+>", "", pre_content(page))) == att.text


def test_html_many_sources():
    att = many_sources(14)
    marks = MARK.findall(to_html(att))
    assert [int(m[0]) for m in marks] == list(range(1, 15))
    assert [m[1] for m in marks] == palette(14)
    assert html.unescape(marks[0][2]).startswith("[1] Source 13 ")


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab<>&\"' \n[]"), min_size=1, max_size=40), st.data())
def test_html_and_plain_round_trip_property(text, data):
    cuts = sorted(data.draw(st.sets(st.integers(0, len(text)), max_size=6)))
    spans = [Span(a, b, source=k % 3, source_offset=a) for k, (a, b) in enumerate(zip(cuts[::2], cuts[1::2])) if b > a]
    att = make(text, spans)
    page = to_html(att)
    assert page.count("<mark") == len(spans)
    assert html.unescape(re.sub(r"<[^>]+>", "", pre_content(page))) == text
    if not set("[]<>") & set(text):
        assert re.sub(r"\[\d+>|<\]", "", to_plain(att)) == text


# ---- rich -------------------------------------------------------------------------------------

def render(renderable) -> Console:
    console = Console(file=io.StringIO(), record=True, width=100, color_system="truecolor")
    console.print(renderable)
    return console


def test_rich_text_spans_carry_colours():
    att = make()
    text = to_rich(att, legend=False)
    assert isinstance(text, Text) and text.plain == att.text
    colours = palette(2)
    styled = [(s.start, s.end, s.style.bgcolor.triplet.hex, s.style.color.triplet.hex) for s in text.spans]
    assert styled == [(4, 11, colours[0], "#000000"), (15, 22, colours[1], "#000000"), (26, 38, colours[0], "#000000")]


def test_rich_export_contains_text_legend_and_summary():
    att = make()
    console = render(to_rich(att))
    out = console.export_text()
    assert att.text in out
    assert "[1] A Book of Dogs" in out and "[2] Poems & <Tales>" in out
    assert out.index("[1] A Book of Dogs") < out.index("[2] Poems")
    assert f"{7 / len(TEXT):.1%}" in out and "3 spans" in out and "min_len 4" in out
    exported = render(to_rich(att)).export_html(inline_styles=True)
    assert f"background-color: {palette(2)[0]}" in exported


def test_rich_does_not_interpret_markup():
    text = "say [bold]hi[/bold] and [red]bye[/] now"
    att = make(text, [Span(4, 19, source=1, source_offset=0)], min_len=3)
    out = render(to_rich(att)).export_text()
    assert text in out
    assert "[1] Poems & <Tales>" in out
    brackets = make("[/]", [Span(0, 3, source=0, source_offset=0)], sources=(SourceInfo("x", "[bold]T[/]"),))
    assert "[1] [bold]T[/]" in render(to_rich(brackets)).export_text()


def test_rich_no_spans_has_single_dim_line():
    att = make("all new", spans=(), min_len=6)
    out = render(to_rich(att)).export_text()
    assert out.splitlines() == ["all new", "no verbatim copies of 6+ characters"]
    assert render(to_rich(att, legend=False)).export_text() == "all new\n"


def test_rich_many_sources_all_in_legend():
    att = many_sources(13)
    out = render(to_rich(att)).export_text()
    for k in range(13):
        assert f"[{k + 1}] Source {12 - k}" in out
    text = to_rich(att, legend=False)
    assert [s.style.bgcolor.triplet.hex for s in text.spans] == palette(13)


# ---- plain ------------------------------------------------------------------------------------

def test_plain_marks_spans_with_legend_numbers():
    assert to_plain(make()) == "The [1>cat sat<] on [2>the mat<]. A [1>dog <b>&</b><] ran."
    assert to_plain(make("free", spans=())) == "free"


def test_only_the_prefix_is_bold() -> None:
    text = to_rich(make(), legend=False, prefix="PRIME")
    assert not text.style  # a bold base style would embolden every piece
    bold = [s for s in text.spans if "bold" in str(s.style)]
    assert [(s.start, s.end) for s in bold] == [(0, 5)]
