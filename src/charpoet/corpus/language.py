"""Which language a text is written in, from its most common function words.

Book-length texts are easy: in any language a few dozen function words (articles,
pronouns, prepositions, auxiliaries) make up a third or more of all running words, and
the sets barely overlap between languages. ``detect_language`` counts, for each language,
the share of a sample's words that are in its set and picks the highest; it reports
``"und"`` (undetermined) when no language reaches a minimal share, e.g. for word lists,
numbers or a script it does not know.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Function words per ISO 639-1 code: frequent, short, and rarely words of another language.
_STOPWORDS: dict[str, str] = {
    "en": "the of and to in that is was he it with as his for had you not be her on at by which"
          " have or from this but they she were are an all we their been has there would when"
          " who will more if no out so said what up its about into than them can only other"
          " could my me him did these should",
    "fr": "le la les de des du et en un une est que qui dans pour pas au aux ce il elle ne se"
          " sur par plus son sa ses avec mais ou nous vous ils elles leur été était avait cette"
          " comme tout bien fait sont être je lui même aussi",
    "de": "der die das und den dem des ein eine einer eines zu ist nicht sich auf mit es im für"
          " von sie war wie auch als aber nach bei noch wird hat nur oder wenn sein ich er wir"
          " ihr ihm ihn so dass daß schon über vor aus",
    "es": "el la los las de del y en un una que es por con no se su sus para al lo como más"
          " pero le ya o fue ha me si sin sobre este esta entre cuando muy también hasta donde"
          " desde todo nos era él ella",
    "it": "il lo la gli le di del della dei delle e che è un una per non con si da al alla ma"
          " come più anche se sono ha nel nella questo questa io egli lei era tutto quando già"
          " dopo essere",
    "pt": "o a os as de do da dos das e que em um uma não para com por se mais como mas ao"
          " aos ele ela seu sua foi são tem já ou quando muito nos também há pelo pela isso"
          " até está eu",
    "nl": "de het een en van in is dat op te zijn met voor niet die er aan als ook maar om"
          " bij nog hij zij ze was wordt werd door naar dan uit heeft hebben wat over kan zo"
          " dit geen ik",
    "la": "et in est non ad cum quod ut sed qui quae quam enim autem esse sunt eius atque"
          " etiam nec per hoc ab ex neque vel sic tamen ergo quia nam inter erat ipse",
    "sv": "och att det som en på är av för med till den har de inte om ett han men var jag"
          " sig från vi så kan man när hade skulle eller hon",
    "da": "og i at det en den til er som på de med han af for ikke der var mig sig men et"
          " har om vi min havde hun nu over da fra du ud",
    "fi": "ja on ei se että hän oli ovat mutta kun tai niin mitä jo kuin myös vain sen hänen"
          " olla joka nyt minä sinä me he",
    "pl": "i w nie na się z do to że jest jak o po tak ale co od za go jego jej czy już tylko"
          " przez ich być był była",
}
STOPWORDS: dict[str, frozenset[str]] = {code: frozenset(words.split()) for code, words in _STOPWORDS.items()}
UNDETERMINED = "und"

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_MIN_WORDS = 20  # fewer words than this: undetermined
_MIN_SHARE = 0.12  # the best language must cover at least this share of the words
_MIN_LEAD = 1.5  # ... and this many times the runner-up's share
_SAMPLE_CHARS = 200_000


@dataclass(frozen=True)
class LanguageGuess:
    """The most likely language of a text, with the share of words that support it."""

    code: str  # ISO 639-1 code, or "und"
    share: float  # fraction of the sample's words that are function words of ``code``
    runner_up: str  # the next best code ("und" if none)
    runner_up_share: float


def detect_language(text: str, sample_chars: int = _SAMPLE_CHARS) -> LanguageGuess:
    """Guess the language of ``text`` from a sample taken from its middle."""
    if len(text) > sample_chars:  # the middle skips front matter and end notes
        start = (len(text) - sample_chars) // 2
        text = text[start:start + sample_chars]
    words = [w.lower() for w in _WORD.findall(unicodedata.normalize("NFC", text))]
    words = [w.replace("’", "'") for w in words]
    if len(words) < _MIN_WORDS:
        return LanguageGuess(UNDETERMINED, 0.0, UNDETERMINED, 0.0)
    shares = sorted(
        ((sum(w in stop for w in words) / len(words), code) for code, stop in STOPWORDS.items()),
        reverse=True,
    )
    (best_share, best), (second_share, second) = shares[0], shares[1]
    if best_share < _MIN_SHARE or best_share < _MIN_LEAD * second_share:
        return LanguageGuess(UNDETERMINED, best_share, best, second_share)
    return LanguageGuess(best, best_share, second, second_share)


def supported_languages() -> list[str]:
    """Codes ``detect_language`` can return (besides ``"und"``)."""
    return sorted(STOPWORDS)
