"""Attribution results -> terminal (rich), HTML and plain text; the only place that styles output.

Every cited source gets one background colour and a legend number, both in order of first
appearance in the text, so the first quoted source is always ``[1]`` with colour 1:

    console.print(to_rich(attribution))            # highlighted text, legend, summary
    Path("a.html").write_text(to_html(attribution))  # standalone page; standalone=False: a fragment
    to_plain(attribution)                          # "free text [1>copied text<] free text"

Generated text is never interpreted: rich receives it as ``Text`` (no markup), HTML escapes it.
"""

from __future__ import annotations

import colorsys
import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

from charpoet.attribution_types import Attribution, Span

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = ["copy_summary", "palette", "to_html", "to_plain", "to_rich"]

# Light, clearly different colours (from ColorBrewer Set3/Set2 and Tableau 20); each keeps black
# text at a contrast ratio >= 7 (WCAG AAA) and any two differ by > 45 in RGB distance.
BASE_PALETTE = (
    "#80b1d3", "#fdb462", "#b3de69", "#fb8072", "#bebada", "#ffed6f",
    "#9edae5", "#fccde5", "#bc80bd", "#ccebc5", "#e5c494", "#66c2a5",
)
TEXT_COLOUR = "#000000"


def palette(n: int) -> list[str]:
    """``n`` background colours as ``#rrggbb``: the fixed list, then evenly spaced HLS hues."""
    if n < 0:
        raise ValueError(f"palette size must be >= 0, got {n}")
    colours = list(BASE_PALETTE[:n])
    extra = n - len(colours)
    for i in range(extra):
        lightness = 0.80 if i % 2 == 0 else 0.70  # alternate so neighbouring hues differ more
        r, g, b = colorsys.hls_to_rgb((i + 0.5) / extra, lightness, 0.65)
        colours.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return colours


def _colours(att: Attribution) -> dict[int, tuple[int, str]]:
    """Source index -> (legend number, colour), in order of first appearance."""
    cited = att.cited_sources()
    return {src: (k + 1, c) for k, (src, c) in enumerate(zip(cited, palette(len(cited))))}


def legend(att: Attribution) -> list[dict[str, object]]:
    """The cited sources as every renderer shows them: number, source name, title and colour,
    in order of first appearance (for pages that draw the highlighting themselves)."""
    return [{"number": number, "source": att.sources[src].name, "title": _title(att, src), "colour": colour}
            for src, (number, colour) in _colours(att).items()]


def _title(att: Attribution, source: int) -> str:
    info = att.sources[source]
    return info.title or info.name


def _span_note(att: Attribution, span: Span, number: int) -> str:
    """Hover text of a span: ``[n] Title — offset 1234 (also in 2 other sources)``."""
    note = f"[{number}] {_title(att, span.source)} — offset {span.source_offset}"
    if span.also_in:
        note += f" (also in {span.also_in} other source{'s' if span.also_in != 1 else ''})"
    return note


def _summary(att: Attribution, colours: dict[int, tuple[int, str]]) -> str:
    """One line of metrics; for no spans, says so."""
    if not att.spans:
        return f"no verbatim copies of {att.min_len}+ characters"
    longest = att.longest
    assert longest is not None
    n = len(att.spans)
    return (
        f"{att.copy_rate:.1%} copied · {n} span{'s' if n != 1 else ''} · longest {longest.length} chars "
        f"from [{colours[longest.source][0]}] {_title(att, longest.source)} · min_len {att.min_len}"
    )


def _pieces(att: Attribution) -> list[tuple[str, Span | None]]:
    """The text cut into consecutive pieces, each with its span (None for free text)."""
    out: list[tuple[str, Span | None]] = []
    pos = 0
    for span in att.spans:
        if span.start > pos:
            out.append((att.text[pos:span.start], None))
        out.append((att.text[span.start:span.end], span))
        pos = span.end
    if pos < len(att.text):
        out.append((att.text[pos:], None))
    return out


def to_rich(attribution: Attribution, *, legend: bool = True, prefix: str = "") -> RenderableType:
    """The highlighted text as ``rich.text.Text``; with ``legend``, a Group adding legend and summary.

    ``prefix`` (e.g. the priming text of a sample) is shown before the text, in bold, and is
    not part of the attribution.
    """
    from rich.console import Group
    from rich.style import Style
    from rich.table import Table
    from rich.text import Text

    att = attribution
    colours = _colours(att)
    text = Text()
    text.append(prefix, style="bold")  # only the prime is bold; Text(style=...) would embolden everything
    for piece, span in _pieces(att):
        style = None if span is None else Style(color=TEXT_COLOUR, bgcolor=colours[span.source][1])
        text.append(piece, style=style)
    if not legend:
        return text
    if not att.spans:
        return Group(text, Text(_summary(att, colours), style="dim"))
    shares = att.source_shares
    table = Table.grid(padding=(0, 1))
    table.add_column()
    table.add_column()
    table.add_column(justify="right")
    for src, (number, colour) in colours.items():
        table.add_row(
            Text("  ", style=Style(bgcolor=colour)),
            Text(f"[{number}] {_title(att, src)}"),
            Text(f"{shares[src]:.1%}"),
        )
    return Group(text, Text(), table, Text(_summary(att, colours), style="dim"))


PAGE_CSS = """\
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #111; background: #fff; }
.charpoet-attribution mark { color: #000; border-radius: 2px; }
.charpoet-attribution mark:hover { outline: 1px solid #000; }
"""


def _html_body(att: Attribution, prefix: str = "") -> str:
    colours = _colours(att)
    parts = [f'<strong class="charpoet-prime">{html.escape(prefix)}</strong>'] if prefix else []
    for piece, span in _pieces(att):
        if span is None:
            parts.append(html.escape(piece))
            continue
        number, colour = colours[span.source]
        note = html.escape(_span_note(att, span, number))
        parts.append(
            f'<mark class="src-{number}" style="background:{colour};color:{TEXT_COLOUR}" '
            f'title="{note}">{html.escape(piece)}</mark>'
        )
    pre = (
        '<pre style="white-space:pre-wrap;font-family:ui-monospace,monospace;line-height:1.4">'
        + "".join(parts) + "</pre>"
    )
    shares = att.source_shares
    items = [
        f'<li><span class="swatch" style="display:inline-block;width:1em;height:1em;background:{colour};'
        f'border:1px solid #0003;vertical-align:middle"></span> '
        f"[{number}] {html.escape(_title(att, src))} <span class=\"share\">{shares[src]:.1%}</span></li>"
        for src, (number, colour) in colours.items()
    ]
    legend = ('<ul class="charpoet-legend" style="list-style:none;padding-left:0">' + "".join(items) + "</ul>"
              if items else "")
    summary = f'<p class="charpoet-summary" style="color:#555">{html.escape(_summary(att, colours))}</p>'
    return f'<div class="charpoet-attribution">{pre}{legend}{summary}</div>'


def to_html(attribution: Attribution | Sequence[Attribution], *, standalone: bool = True,
            title: str = "charpoet attribution", prefix: str = "") -> str:
    """The highlighted text, legend and summary as HTML: a full page, or a ``<div>`` fragment (Jupyter).

    Several attributions (e.g. the samples of one ``generate``) become one page, one block each.
    ``prefix`` (the priming text of samples) is shown in bold before each text, as in ``to_rich``.
    """
    items = [attribution] if isinstance(attribution, Attribution) else list(attribution)
    body = "\n<hr>\n".join(_html_body(att, prefix) for att in items)
    if not standalone:
        return body
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{PAGE_CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def to_plain(attribution: Attribution) -> str:
    """The text with each span marked ``[n>copied text<]``, n being the source's legend number."""
    colours = _colours(attribution)
    return "".join(
        piece if span is None else f"[{colours[span.source][0]}>{piece}<]"
        for piece, span in _pieces(attribution)
    )


def copy_summary(attribution: Attribution) -> str:
    """One line for a pipe or a log: ``31.5% copied verbatim (2 spans of 20+ chars, longest 42 from Hamlet)``."""
    att, longest = attribution, attribution.longest
    where = f", longest {longest.length} from {att.sources[longest.source].title}" if longest else ""
    spans = f"{len(att.spans)} span{'' if len(att.spans) == 1 else 's'}"
    return f"{att.copy_rate:.1%} copied verbatim ({spans} of {att.min_len}+ chars{where})"
