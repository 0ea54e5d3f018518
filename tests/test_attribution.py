"""The indexed attribution against a naive oracle: the seeds' repeated substring scan
(``charpoet.attribution_reference.seeds_scan``)."""

import math

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


def test_matches_longer_than_the_vectorised_cap_are_extended():
    long = "".join(chr(97 + (i * 7919) % 26) for i in range(3 * CAP))
    texts = ["prefix " + long + " suffix", long[: CAP + 10]]
    check(texts, "<<" + long + ">>", 20)
    check(texts, long[5:] + "!" + long[: CAP + 10], 20)


alphabet = st.sampled_from("abc ")
small_text = st.text(alphabet=alphabet, min_size=0, max_size=60)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet=alphabet, min_size=1, max_size=80), min_size=1, max_size=4), small_text,
       st.integers(min_value=1, max_value=8))
def test_random_texts_agree_with_the_oracle(texts, query, min_len):
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
    assert again.fingerprint == index.fingerprint and again.sources == index.sources
    assert again.attribute("text to index and another", 4) == index.attribute("text to index and another", 4)
    (tmp_path / "bad.safetensors").write_bytes(b"nonsense")
    with pytest.raises(CheckpointError):
        CorpusIndex.load(tmp_path / "bad.safetensors")


def test_min_len_must_be_positive():
    with pytest.raises(ConfigError, match="--min-quote"):
        index_of("abc").attribute("abc", 0)
