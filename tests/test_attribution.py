"""The indexed attribution against a naive oracle: the seeds' repeated substring scan
(``charpoet.attribution_reference.seeds_scan``)."""

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charpoet.attribution import CAP, CorpusIndex
from charpoet.attribution_reference import seeds_scan
from charpoet.corpus import Library, Source, library_from_paths
from charpoet.errors import CheckpointError, ConfigError


def naive_novelty(text: str, sources: list[str], length: int) -> float:
    count = len(text) - length + 1
    if count <= 0:
        return math.nan
    return sum(not any(text[i : i + length] in s for s in sources) for i in range(count)) / count


def index_of(*texts: str) -> CorpusIndex:
    return CorpusIndex.build(Library("t", tuple(Source(f"s{i}", f"Source {i}", t) for i, t in enumerate(texts))))


def check(texts: list[str], query: str, min_len: int) -> None:
    got = index_of(*texts).attribute(query, min_len)
    spans = [(s.start, s.end, s.source, s.source_offset, s.also_in) for s in got.spans]
    assert spans == seeds_scan(query, texts, min_len)
    for length in (1, 2, 3, 5, 8, 13):
        expected = naive_novelty(query, texts, length)
        actual = got.novelty[length - 1]
        assert (math.isnan(expected) and math.isnan(actual)) or actual == pytest.approx(expected)


def test_spans_never_cross_source_boundaries():
    texts = ["the quick brown fox", "jumps over the lazy dog"]
    # the query runs across the boundary of the two sources as they are concatenated
    check(texts, "quick brown foxjumps over the", min_len=5)
    got = index_of(*texts).attribute("quick brown foxjumps over the", 5)
    assert [(s.start, s.end) for s in got.spans] == [(0, 15), (15, 29)]


def test_ties_go_to_the_first_source_with_a_count_of_the_others():
    texts = ["xx shared passage here yy", "shared passage here", "zz shared passage here"]
    got = index_of(*texts).attribute("[shared passage here]", 8)
    (span,) = got.spans
    assert (span.start, span.end, span.source, span.source_offset, span.also_in) == (1, 20, 0, 3, 2)
    check(texts, "[shared passage here]", 8)


@pytest.mark.parametrize("min_len", [1, 2, 5, 20])
def test_repeated_text_and_min_len_edges(min_len):
    texts = ["abababababcabab" * 3, "aaaaaaaaab"]
    for query in ["ababab", "aaaaaaaaaa", "cababcab", "abc" * 10, "a", ""]:
        check(texts, query, min_len)


def test_unicode_text_offsets_are_in_characters():
    texts = ["Größe und Übermut — naïve café 日本語のテキスト", "ça va? Ça ira! 🎉 emoji 🎉"]
    query = "xx naïve café 日本語 and ça ira! 🎉 emoji 🎉!"
    check(texts, query, 4)
    got = index_of(*texts).attribute(query, 4)
    for span in got.spans:
        source_text = texts[span.source]
        assert source_text[span.source_offset : span.source_offset + span.length] == query[span.start : span.end]


@pytest.mark.parametrize("min_len", [20, CAP, CAP + 1, CAP + 10, 3 * CAP])
def test_matches_longer_than_the_vectorised_cap_are_extended(min_len):
    long = "".join(chr(97 + (i * 7919) % 26) for i in range(3 * CAP))
    texts = ["prefix " + long + " suffix", long[: CAP + 10]]
    check(texts, "<<" + long + ">>", min_len)
    check(texts, long[5:] + "!" + long[: CAP + 10], min_len)


# Pseudo-random text in which every passage of a dozen characters or more occurs only once,
# in scripts of 1 (ASCII), 3 (CJK) and 4 (emoji, astral) UTF-8 bytes a character.
SCRIPTS = {"ascii": (ord("a"), 26), "cjk": (0x4E00, 20_000), "emoji": (0x1F300, 700)}


def scrambled(script: str, size: int, seed: int) -> str:
    first, count = SCRIPTS[script]
    rng = random.Random(seed)
    return "".join(chr(first + rng.randrange(count)) for _ in range(size))


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("length", [300, 1000, 5000])
def test_long_quotes_are_one_span_at_any_min_quote(script, length):
    texts = [scrambled(script, 1000, seed=1), scrambled(script, length + 700, seed=2)]
    offset = 333
    quote = texts[1][offset : offset + length]
    query = "#" + quote + "#"  # "#" occurs in no source
    index = index_of(*texts)
    # min-quote below and above the old cap, in bytes and in characters of 3 and 4 bytes
    for min_len in (20, CAP // 4, CAP // 4 + 1, CAP // 3, CAP // 3 + 1, CAP - 1, CAP, CAP + 1, length - 1, length):
        got = index.attribute(query, min_len)
        assert [(s.start, s.end, s.source, s.source_offset, s.also_in) for s in got.spans] == \
            [(1, 1 + length, 1, offset, 0)] == seeds_scan(query, texts, min_len)
        assert got.copy_rate == pytest.approx(length / len(query))
    assert index.attribute(query, length + 1).spans == () == tuple(seeds_scan(query, texts, length + 1))


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_long_quote_stops_at_a_character_boundary(script):
    # the character after the quote shares all but its last UTF-8 byte with the source's
    texts = [scrambled(script, 2000, seed=3)]
    quote, following = texts[0][100:1100], texts[0][1100]
    changed = chr(ord(following) ^ 1)
    query = "#" + quote + changed + texts[0][1101:1200]
    assert (quote + changed).encode()[:-1] in texts[0].encode()  # the byte match ends inside `changed`
    for min_len in (20, CAP // 3 + 1, CAP + 1, len(quote)):
        got = index_of(*texts).attribute(query, min_len)
        assert [(s.start, s.end, s.source_offset) for s in got.spans][:1] == [(1, 1 + len(quote), 100)]
        check(texts, query, min_len)


def test_long_runs_of_one_character():
    texts = ["x" + "a" * 1000 + "x", "🎉" * 300]
    for query in ["a" * 3500, "🎉" * 700 + "a" * 1200, "b" + "🎉" * 299 + "a" * 999]:
        for min_len in (1, 20, 299, 300, 301, 999, 1000, 1001):
            check(texts, query, min_len)


def test_chinese_and_mixed_scripts_agree_with_the_oracle(shared_corpora):
    raw = shared_corpora / "gutenberg" / "raw" / "pg25558-lu-kun-shen-yin-yu-modern-zh.txt"
    chinese = raw.read_text(encoding="utf-8")
    chinese = chinese[chinese.index("呻吟，病聲也") :][:30_000]
    english = (shared_corpora / "tinyshakespeare.txt").read_text(encoding="utf-8")[:20_000]
    mixed = "".join(a + b for a, b in zip(chinese[20_000:21_000].split("。"), english[5_000:8_000].split("\n")))
    texts = [chinese, english, mixed + " 🎉🐍 naïve café 🎉 " + chinese[3_000:3_400]]
    query = ("新語 " + chinese[500:1_500] + " zqx " + english[900:1_300] + "🐍" + mixed[100:700]
             + chinese[3_000:3_400] + " 🎉🐍 naïve café 🎉 " + chinese[10_000:10_080] + "。" + chinese[100:120])
    index = CorpusIndex.build(Library("t", tuple(Source(f"s{i}", f"Source {i}", t) for i, t in enumerate(texts))))
    for min_len in (4, 20, 90, CAP + 1, 600):
        got = index.attribute(query, min_len)
        spans = [(s.start, s.end, s.source, s.source_offset, s.also_in) for s in got.spans]
        assert spans == seeds_scan(query, texts, min_len)
        for span in got.spans:
            passage = texts[span.source][span.source_offset : span.source_offset + span.length]
            assert passage == query[span.start : span.end]
    assert (3, 1_003, 0, 500, 0) in [(s.start, s.end, s.source, s.source_offset, s.also_in)
                                     for s in index.attribute(query, CAP + 1).spans]


alphabet = st.sampled_from("abc ")
wide_alphabet = st.sampled_from("abc é日本🎉\n")  # 1 to 4 UTF-8 bytes a character


@st.composite
def library_and_query(draw):
    """Sources (short, or a unit repeated past CAP bytes) and a query of novel pieces, copies of
    nearly a whole source and copies of any slice."""
    chars = draw(st.sampled_from([alphabet, wide_alphabet]))
    unit = st.text(alphabet=chars, min_size=1, max_size=12)
    repeated = st.builds(lambda u, size, tail: (u * size)[:size] + tail, unit, st.integers(CAP, 3 * CAP),
                         st.text(alphabet=chars, max_size=30))
    texts = draw(st.lists(st.one_of(repeated, st.text(alphabet=chars, min_size=1, max_size=80)), min_size=1, max_size=4))
    pieces = []
    for kind in draw(st.lists(st.sampled_from(["long copy", "novel", "slice"]), min_size=1, max_size=5)):
        source = texts[draw(st.integers(0, len(texts) - 1))]
        if kind == "novel":
            pieces.append(draw(st.text(alphabet=st.sampled_from("abcz é日🎉"), max_size=20)))
        elif kind == "long copy":
            pieces.append(source[draw(st.integers(0, 40)) : len(source) - draw(st.integers(0, 40))])
        else:
            start = draw(st.integers(0, len(source) - 1))
            pieces.append(source[start : start + 1 + draw(st.integers(0, len(source) - start - 1))])
    return texts, "".join(pieces)


@settings(max_examples=150, deadline=None)
@given(library_and_query(),
       st.one_of(st.integers(1, 8), st.integers(CAP // 4 - 2, CAP // 3 + 2), st.integers(CAP - 2, 4 * CAP)))
def test_random_texts_agree_with_the_oracle(library, min_len):
    texts, query = library
    check(texts, query, min_len)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("aé日🎉 \n"), min_size=1, max_size=40), min_size=1, max_size=3),
       st.text(alphabet=st.sampled_from("aé日🎉 \nz"), max_size=40), st.integers(min_value=1, max_value=5))
def test_random_unicode_agrees_with_the_oracle(texts, query, min_len):
    check(texts, query, min_len)


def test_real_text_agrees_with_the_oracle(shared_corpora):
    library = library_from_paths([str(shared_corpora / "tinyshakespeare.txt")])
    text = library.sources[0].text
    index = CorpusIndex.build(library)
    # a "generated" text: copies of several lengths with novel text in between
    query = text[1000:1050] + "zqx wibble " + text[5000:5019] + text[9000:9200] + " plonk\n" + text[400:425]
    got = index.attribute(query, 20)
    assert [(s.start, s.end, s.source, s.source_offset) for s in got.spans] == \
        [t[:4] for t in seeds_scan(query, [text], 20)]
    assert got.copy_rate > 0.5 and got.longest.length >= 190


def test_metrics():
    got = index_of("hello world, hello there").attribute("hello world! goodbye", 5)
    assert [(s.start, s.end) for s in got.spans] == [(0, 11)]
    assert got.copy_rate == pytest.approx(11 / 20)
    assert got.source_shares == {0: pytest.approx(11 / 20)}
    assert got.longest.length == 11
    d = got.to_dict()
    assert d["spans"][0]["source"] == "s0" and d["metrics"]["copy_rate"] == pytest.approx(0.55)
    assert got.novelty[0] == pytest.approx(sum(c not in "hello world, hello there" for c in "hello world! goodbye") / 20)
    assert len(got.novelty) == 50 and math.isnan(got.novelty[-1])


def test_save_and_load_round_trip(tmp_path):
    index = index_of("some text to index", "and another one")
    index.save(tmp_path / "index.safetensors")
    again = CorpusIndex.load(tmp_path / "index.safetensors")
    assert again.mapped and not index.mapped  # the arrays are mapped from the file, not read
    assert again.fingerprint == index.fingerprint and again.sources == index.sources
    assert again.attribute("text to index and another", 4) == index.attribute("text to index and another", 4)
    (tmp_path / "bad.safetensors").write_bytes(b"nonsense")
    with pytest.raises(CheckpointError):
        CorpusIndex.load(tmp_path / "bad.safetensors")


def test_min_len_must_be_positive():
    with pytest.raises(ConfigError, match="--min-quote"):
        index_of("abc").attribute("abc", 0)
