"""Language detection from function words."""

from __future__ import annotations

import pytest

from charpoet.corpus.files import read_text_file
from charpoet.corpus.language import UNDETERMINED, detect_language, supported_languages

SAMPLES = {
    "en": "It was the best of times, it was the worst of times, it was the age of wisdom, and"
          " they had everything before them, and we were all going direct to Heaven.",
    "fr": "Il était une fois un roi et une reine qui étaient bien fâchés de n'avoir point"
          " d'enfants, et ils allèrent à toutes les eaux du monde pour avoir un fils.",
    "de": "Als Gregor Samsa eines Morgens aus unruhigen Träumen erwachte, fand er sich in"
          " seinem Bett zu einem ungeheueren Ungeziefer verwandelt, und er lag auf dem Rücken.",
    "es": "En un lugar de la Mancha, de cuyo nombre no quiero acordarme, no ha mucho tiempo"
          " que vivía un hidalgo de los de lanza en astillero y adarga antigua, con su rocín.",
    "nl": "Het was een mooie dag en de kinderen speelden in de tuin van het huis, want er was"
          " niets anders te doen voor hen en ze hadden geen zin om naar school te gaan.",
}


@pytest.mark.parametrize("code", sorted(SAMPLES))
def test_short_paragraphs(code: str) -> None:
    assert detect_language(SAMPLES[code]).code == code


def test_undetermined_for_too_little_or_no_prose() -> None:
    assert detect_language("Hello world").code == UNDETERMINED
    numbers = " ".join(str(i) for i in range(500))
    assert detect_language(numbers).code == UNDETERMINED
    word_list = " ".join(["aardvark", "zebra", "quokka", "lemur", "okapi"] * 20)
    assert detect_language(word_list).code == UNDETERMINED


def test_supported_languages() -> None:
    assert {"en", "fr", "de", "es", "nl", "it", "pt", "la"} <= set(supported_languages())


@pytest.mark.parametrize(("name", "code"), [
    ("pg14155-flaubert-madame-bovary-fr.txt", "fr"),
    ("pg2000-cervantes-don-quijote-es.txt", "es"),
    ("pg22367-kafka-die-verwandlung-de-pgsource-2024.txt", "de"),
    ("pg800-verne-le-tour-du-monde-en-80-jours-fr-iso8859-1.txt", "fr"),
    ("pg84-shelley-frankenstein-modern.txt", "en"),
    ("pg64317-fitzgerald-great-gatsby-modern-cp1252.txt", "en"),
])
def test_real_books(shared_corpora, name: str, code: str) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = read_text_file(shared_corpora / "gutenberg" / "raw" / name)
    guess = detect_language(text)
    assert guess.code == code
    assert guess.share > 1.5 * guess.runner_up_share
