"""The word lists the offline writers read: data files under ``data/``, loaded once at import.

They are the backend's own multilingual (en/es/ko) lexicon, independent of the sample lyrics
generator, so the lyrics understanding is not graded against the words that wrote the lyrics.
Lists are kept in the order they were written; where only membership counts they become sets.

- ``themes.json``: per theme, its English ``name``, the ``mood`` it lends, and ``en``/``es``/
  ``ko`` entries. English/Spanish entries match whole words (plus simple inflections); Korean
  entries match a noun followed by a particle, or any continuation when they end in "*".
- ``theme_names.json``: English words a lyrics summary uses for a theme -> the theme's key.
- ``imagery.json``: concrete images, glossed into English so a summary never quotes lines
  (English words are their own gloss).
- ``mood_words.json``: positive and negative words per language.
- ``korean_particles.json``: what may follow a Korean noun entry ("" is the bare noun).
- ``stopwords.json``: English and Spanish words too common to be a hook's key word.
- ``pronouns.json``: per language, the words of each grammatical person (i, you, we, they).
- ``language_names.json``: Music4All language code -> English name.
- ``language_cues.json``: function words and characters that tell Spanish from English.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"  # package data


def load(name: str) -> Any:
    return json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))


THEMES: dict[str, dict[str, Any]] = load("themes")
THEME_NAME_WORDS: dict[str, str] = load("theme_names")
_imagery = load("imagery")
IMAGERY: dict[str, dict[str, str]] = {"en": {w: w for w in _imagery["en"]}, "es": _imagery["es"], "ko": _imagery["ko"]}
MOOD_WORDS: dict[str, dict[str, list[str]]] = load("mood_words")
KO_PARTICLES: frozenset[str] = frozenset(load("korean_particles"))
STOPWORDS: frozenset[str] = frozenset(w for words in load("stopwords").values() for w in words)
PRONOUNS: dict[str, dict[str, frozenset[str]]] = {
    lang: {person: frozenset(words) for person, words in table.items()} for lang, table in load("pronouns").items()
}
LANGUAGE_NAMES: dict[str, str] = load("language_names")
_cues = load("language_cues")
FUNCTION_WORDS: dict[str, frozenset[str]] = {lang: frozenset(words) for lang, words in _cues["function_words"].items()}
SPANISH_CHARACTERS: frozenset[str] = frozenset(_cues["spanish_characters"])
