"""English phrasing helpers shared by the offline writers, and the chooser that varies them."""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five",
                6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}


class Chooser:
    """Deterministic choices keyed by (salt, clip id, slot): varied but reproducible phrasing."""

    def __init__(self, clip_id: str, salt: str = "") -> None:
        self.key = f"{salt}|{clip_id}"

    def index(self, slot: str, n: int) -> int:
        digest = hashlib.sha256(f"{self.key}|{slot}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % max(n, 1)

    def pick(self, slot: str, options: Sequence[str]) -> str:
        return options[self.index(slot, len(options))]


def quote_tag(tag: str) -> str:
    """A listener tag in single quotes (any quote inside it dropped)."""
    return "'" + tag.replace("'", "") + "'"


def with_article(phrase: str) -> str:
    """Indefinite article + phrase."""
    word = phrase.strip().lower()
    vowel = word[:1] in "aeiou" and not word.startswith(("uni", "euro", "one"))
    if word.startswith(("hour", "honest", "8", "11", "18", "80")):
        vowel = True
    return f"{'an' if vowel else 'a'} {phrase.strip()}"


def cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def lower_first(text: str) -> str:
    """Lower-case a leading capital, but leave acronyms ("BPM") alone."""
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text


def join_list(items: Sequence[str], conj: str = "and") -> str:
    """Phrases joined as "a, b and c" (empty ones skipped)."""
    items = [i for i in items if i]
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {conj} {items[-1]}"


def split_sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+", (text or "").strip())
    return [p.strip() for p in parts if p.strip()]


def clean_line(text: str) -> str:
    """One line of plain text: no newlines, no markdown emphasis markers, single spaces."""
    text = (text or "").replace("**", "").replace("__", "")
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"^\s*(?:[-*]\s*)?\d+\s*[.)]\s*", "", text)  # a leading "3." would read as a list item
    return text.strip()


def end_sentence(text: str) -> str:
    """``text`` with a full stop unless it already ends a sentence."""
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."


def counted(n: int, noun: str) -> str:
    """A count and its noun, plural unless the count is 1: "1 line", "3 lines"."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def to_float(value: float | None) -> float | None:
    """``value`` as a float, or None when it is missing or not a number."""
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
