"""Chords and keys as madmom labels them: parsing, names, roman numerals, the chord at a time.

madmom writes a chord as ``root:quality`` ("A:min", "C:maj") and "N" (or "X") where no chord
sounds, and a key as "A minor". Everything that reads those labels reads them here, and
every consumer says at its own call site how it spells "no chord": the functions below
answer ``None`` for it.

One spelling of a chord name serves every consumer (``chord_name``: "A:min" -> "Am"); only the
words for "no chord" differ by audience, so ``chord_text`` takes them from its caller: the
OpenAI prompts say "no chord", the offline captions keep madmom's "N".
"""

from __future__ import annotations

import re
from typing import Sequence

from mv4all.schema import Chord

NO_CHORD_LABELS = ("N", "X")

NOTE_PC = {
    "C": 0, "B#": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "Fb": 4, "E#": 5, "F": 5,
    "F#": 6, "Gb": 6, "G": 7, "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11, "Cb": 11,
}  # fmt: skip
QUALITY_SUFFIX = {"maj": "", "min": "m", "dim": "dim", "aug": "aug", "7": "7",
                  "maj7": "maj7", "min7": "m7", "sus4": "sus4", "sus2": "sus2"}
DEGREES = ["I", "bII", "II", "bIII", "III", "IV", "#IV", "V", "bVI", "VI", "bVII", "VII"]
DEGREES_MINOR = ["I", "bII", "II", "III", "#III", "IV", "#IV", "V", "VI", "#VI", "VII", "#VII"]


def parse_chord(label: str) -> tuple[str, str] | None:
    """(root, quality) of a chord label, madmom's "A:min" or the common "Am"; None for no chord."""
    label = (label or "").strip()
    if not label or label in NO_CHORD_LABELS:
        return None
    root, _, quality = label.partition(":")
    if root not in NOTE_PC:
        m = re.match(r"^([A-G][#b]?)(.*)$", label)
        if not m:
            return None
        root, rest = m.group(1), m.group(2)
        quality = "min" if rest.startswith("m") and not rest.startswith("maj") else (rest or "maj")
    return root, (quality or "maj")


def chord_name(label: str) -> str | None:
    """The chord's usual name: "A:min" -> "Am", "C:maj" -> "C", "F#:min7" -> "F#m7"; None for no chord."""
    parsed = parse_chord(label)
    if parsed is None:
        return None
    root, quality = parsed
    return root + QUALITY_SUFFIX.get(quality, quality if quality.startswith(("m", "7", "9", "s", "a", "d")) else "")


def chord_text(label: str, no_chord: str) -> str:
    """``chord_name`` for text, with the caller's words where no chord sounds."""
    name = chord_name(label)
    return no_chord if name is None else name


def parse_key(key: str) -> tuple[int, str] | None:
    """(tonic pitch class, "major" or "minor") of a key such as "A minor" or "Eb:maj"."""
    m = re.match(r"^\s*([A-G][#b]?)\s*[: ]?\s*(major|minor|maj|min)?", key or "", re.IGNORECASE)
    if not m or m.group(1) not in NOTE_PC:
        return None
    mode = (m.group(2) or "major").lower()
    return NOTE_PC[m.group(1)], ("minor" if mode.startswith("min") else "major")


def roman_numeral(label: str, key: tuple[int, str] | None) -> str | None:
    """The chord's degree in ``key`` ("vi", "bVII", "vii°"); None when either is unknown."""
    parsed = parse_chord(label)
    if parsed is None or key is None:
        return None
    root, quality = parsed
    interval = (NOTE_PC[root] - key[0]) % 12
    degree = (DEGREES_MINOR if key[1] == "minor" else DEGREES)[interval]
    if quality.startswith("min") or quality == "dim":
        degree = degree.lower()
    if quality == "dim":
        degree += "°"
    return degree


def sounding_chord(chords: Sequence[Chord], t: float, *, hold_last: bool = False) -> Chord | None:
    """The chord segment sounding at ``t`` (start <= t < end), or None.

    The tracked chords can stop short of the clip's last frames: ``hold_last`` lets the final
    chord ring on at and after its end instead of answering None there.
    """
    for chord in chords:
        if chord.start <= t < chord.end:
            return chord
    if hold_last and chords and t >= chords[-1].end:
        return chords[-1]
    return None
