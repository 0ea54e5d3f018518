import pytest
from hypothesis import given
from hypothesis import strategies as st

from charpoet.errors import CheckpointError, TokenizerError
from charpoet.tokenizer import UNK, CharTokenizer, WordTokenizer, build_tokenizer, tokenizer_from_dict


def test_char_round_trip_and_sorted_vocabulary():
    text = "Hello, wörld!\nÉtude — 日本\n"
    tok = CharTokenizer.fit([text])
    assert tok.chars == sorted(set(text))
    ids = tok.encode(text)
    assert ids.dtype.kind == "i" and len(ids) == len(text)
    assert tok.decode(ids) == text


@given(st.text(min_size=1))
def test_char_round_trip_property(text):
    tok = CharTokenizer.fit([text])
    assert tok.decode(tok.encode(text)) == text
    # the vectorised encoder agrees with a plain dictionary lookup
    assert tok.encode(text).tolist() == [tok.chars.index(c) for c in text]


def test_unknown_characters_are_named():
    tok = CharTokenizer.fit(["abc"])
    with pytest.raises(TokenizerError, match=r"'x'.*'€'|'€'.*'x'"):
        tok.encode("abx€")


def test_word_round_trip_preserves_whitespace_and_punctuation():
    text = "Don't stop,  now!\n\n\tO'er the hills — 42 times.\n"
    tok = WordTokenizer.fit([text])
    assert tok.decode(tok.encode(text)) == text
    assert "Don't" in tok.tokens and "\n" in tok.tokens and "  " in tok.tokens


@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1))
def test_word_round_trip_property(text):
    tok = WordTokenizer.fit([text], max_vocab=None)
    assert tok.decode(tok.encode(text)) == text


def test_word_vocabulary_cap_maps_rare_tokens_to_unk():
    text = "a a a a b b b c c d"
    tok = WordTokenizer.fit([text], max_vocab=3)
    assert tok.tokens == [UNK, " ", "a"]
    assert tok.decode(tok.encode("a b")) == f"a {UNK}"
    assert tok.vocab_size == 3


def test_word_vocabulary_is_deterministic_on_ties():
    a = WordTokenizer.fit(["x y z y x z"], max_vocab=10).tokens
    b = WordTokenizer.fit(["z y x x y z"], max_vocab=10).tokens
    assert a == b


@pytest.mark.parametrize("kind", ["char", "word"])
def test_serialisation_round_trip(kind):
    tok = build_tokenizer(kind, ["some text, here.\n"], 100)
    again = tokenizer_from_dict(tok.to_dict())
    assert type(again) is type(tok) and again.to_dict() == tok.to_dict()


def test_invalid_vocabulary_is_a_checkpoint_error():
    with pytest.raises(CheckpointError):
        tokenizer_from_dict({"kind": "char", "chars": ["a", "a"]})
    with pytest.raises(CheckpointError):
        tokenizer_from_dict({"kind": "bpe"})


@given(st.lists(st.text(alphabet=st.characters(codec="utf-8"), min_size=1), min_size=1, max_size=4),
       st.sampled_from(["char", "word"]), st.integers(min_value=2, max_value=50))
def test_a_vocabulary_written_as_json_encodes_exactly_as_before(texts, kind, max_vocab):
    """A run's vocab.json, read back, gives the same ids and text: what training wrote is what
    generation reads."""
    import json

    tok = build_tokenizer(kind, texts, max_vocab)
    again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict(), ensure_ascii=False)))
    for text in texts:
        ids = tok.encode(text)
        assert again.encode(text).tolist() == ids.tolist()
        assert again.decode(ids) == tok.decode(ids)
        if kind == "char":
            assert again.decode(ids) == text
