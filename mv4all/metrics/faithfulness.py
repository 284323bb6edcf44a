"""Music faithfulness: are the musical claims a description makes true of the clip? No model needed.

BLEU/ROUGE/BERTScore reward wording; a description can score well while calling a 70 BPM
ballad in D minor "a frantic major-key anthem". This metric reads the claims with rules and
checks them against the row's measured facts (``music_features``, ``mv_type``, ``genres``).
Word lists live in ``data/faithfulness.json``; the thresholds below are the documentation.

Claim types and when a claim is right (a fact that is missing makes the claim uncheckable,
which is never counted right or wrong):

- ``tempo``: a stated BPM ("120 BPM", "a hundred and twenty beats per minute", "tempo of
  96", a range "120-128 BPM") is right within 4 % of the measured tempo. Half/double time is
  *not* accepted: the measured tempo is what the dataset's targets state, so a model that
  halves it disagrees with its own training facts. Tempo words are checked against
  ``TEMPO_BANDS`` (inclusive BPM ranges that overlap, so a borderline word is not punished).
- ``key``: "in A minor", "key of C major", "E-flat major", "Bb minor", "F sharp minor" are
  right when tonic (enharmonics equal: F# = Gb) and mode match; the relative key is wrong.
  A bare "minor key"/"major-key" is checked against the mode. A row key "unknown" is uncheckable.
- ``meter``: "4/4", "3/4", "6/8", "common time", "waltz time", "triple meter" vs
  ``beats_per_bar`` (0 = unknown). n/4 needs n beats per bar; compound n/8 (6/8, 12/8) accepts
  n or n/3 beats; "duple" accepts 2 or 4.
- ``energy``, ``mood`` (valence) and ``danceability`` words vs ``ENERGY_BANDS``,
  ``MOOD_BANDS``, ``DANCE_BANDS`` (0..1). The bands leave a neutral middle (0.4-0.6) where
  neither a low nor a high word is wrong.
- ``mv_type``: the type the description adopts = the *earliest* type phrase of its overview
  (the text before the frame list: "a lyric video", "an animated music video", "a
  story-driven narrative video"...), one claim per text. Later mentions ("cinematic
  framing", a frame showing "a live performance on the roof") describe style or scene
  content, not the type.
- ``genre``: genre words grouped in families (rock, pop, hip hop, electronic, ...); right when
  a claimed family is among the families of the row's genres ("indie rock" -> indie + rock).
  A row whose genres map to no family is uncheckable.

Descriptions also describe pictures ("a slow pan", "fast cuts", "dark lighting"), so an
adjective is a musical claim only when it attaches to a music noun (song, beat, tempo, mood,
...) within a few words in the same clause, and the first noun met is not a visual one.
Words that name a pace or an intensity ("gentle", "energetic", "upbeat", "driving") are tempo
claims when they describe the tempo, pulse or BPM ("a gentle 72 BPM pulse") and energy/mood
claims otherwise ("a gentle piano melody"). Negated claims ("not fast", "isn't in a major
key", "never slow") are dropped, not inverted: "not fast" does not say which band the tempo
is in. Identical claims (type and value) in one text count once.

``faithfulness`` reports, per type, coverage (share of predictions with >= 1 checkable claim
of the type) and precision (right / checked claims; None when there are none), and one
``score``: micro-averaged precision over all checked claims. A text that claims nothing is
not wrong; it only lowers coverage. ``macro_precision`` is the mean of the per-type precisions.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

CLAIM_TYPES = ("tempo", "key", "meter", "energy", "mood", "danceability", "mv_type", "genre")
BPM_TOLERANCE = 0.04
# (low, high) inclusive; None = open.
TEMPO_BANDS = {"slow": (None, 95), "relaxed": (None, 110), "moderate": (80, 130), "fast": (110, None),
               "very fast": (140, None)}
ENERGY_BANDS = {"low": (None, 0.6), "moderate": (0.25, 0.8), "high": (0.4, None)}
MOOD_BANDS = {"negative": (None, 0.6), "mixed": (0.2, 0.8), "positive": (0.4, None)}
DANCE_BANDS = {"high": (0.5, None)}
_BANDS = {"tempo": TEMPO_BANDS, "energy": ENERGY_BANDS, "mood": MOOD_BANDS, "danceability": DANCE_BANDS}
FORWARD, BACKWARD, NEGATION_WINDOW = 3, 4, 4  # context search (tokens after/before), negation reach

_PITCH = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_TOKEN_RE = re.compile(r"r&b|[^\W_]+(?:['-][^\W_]+)*|[.,;:!?()\[\]\"“”\n]", re.IGNORECASE)
_HARD = set(".;:!?()[]\"“”\n")  # clause ends; a comma is one too, except inside a list of adjectives
_SOFT = {"but", "yet", "though", "although", "while", "whereas"}  # end a negation's reach
_KEY_RE = re.compile(r"\b([A-G])(?:([#♯b♭])|[\s-]((?i:sharp|flat)))?[\s-]+((?i:major|minor|maj|min))\b"
                     r"(?!\s*(?i:chords?|triads?|arpeggios?|sevenths?|7th))")
_MODE_RE = re.compile(r"\b(major|minor)[\s-]+(keys?|tonality|mode|scale)\b", re.IGNORECASE)
_METER_RE = re.compile(r"(?<![\d/])(\d{1,2})/(2|4|8|16)(?![\d/])(?!\s+of\b)")
_BPM_UNIT = re.compile(r"bpm\b|beats?[\s-]+(?:per|a|each)[\s-]+minute", re.IGNORECASE)
_BPM_RE = re.compile(r"(\d{2,3}(?:\.\d+)?)(?:\s*(?:-|–|to)\s*(\d{2,3}(?:\.\d+)?))?[\s-]*(?:" + _BPM_UNIT.pattern + ")",
                     re.IGNORECASE)
_FRAMES_RE = re.compile(r"^\W*frame[\s-]*by[\s-]*frame|^\s*(?:[-*]\s*)?1\s*[.)]\s", re.IGNORECASE | re.MULTILINE)
_TEMPO_OF_RE = re.compile(r"\btempo\s+(?:(?:of|at|around|about|near|is|sits)\s+)*~?(\d{2,3}(?:\.\d+)?)\b(?!\s*%)",
                          re.IGNORECASE)


@lru_cache(maxsize=1)
def lexicon() -> dict[str, Any]:
    """The word lists, plus a phrase table: token tuple -> [(kind, label)], built once."""
    data = json.loads((Path(__file__).resolve().parent / "data" / "faithfulness.json").read_text(encoding="utf-8"))
    phrases: dict[tuple[str, ...], list[tuple[str, str]]] = {}

    def add(words: list[str], kind: str, label: str) -> None:
        for w in words:
            entry = (kind, label)
            bucket = phrases.setdefault(_words(w), [])
            if entry not in bucket:
                bucket.append(entry)

    for kind in ("tempo", "energy", "mood", "danceability"):
        for band, words in data[kind].items():
            add(words, kind, band)
    for family, lists in data["genres"].items():
        add(lists["free"], "genre", family)
        add(lists["context"], "genre?", family)
    for mv_type, lists in data["mv_types"].items():
        add(lists["phrases"], "mv_type", mv_type)
        add(lists["modifiers"], "mv_type?", mv_type)
    add(list(data["meter_phrases"]), "meter", "")
    sets = {k: {_words(w) for w in data[k]} for k in ("negators", "self_contained", "tempo_noun_only")}
    sets.update({k: set(data[k]) for k in ("compound_suffixes", "music_nouns", "tempo_nouns",
                                           "visual_nouns", "section_nouns", "video_nouns")})
    return {**data, **sets, "phrases": phrases, "longest": max(map(len, phrases)), "firsts": {p[0] for p in phrases}}


def _words(text: str) -> tuple[str, ...]:
    return _key(t.lower() for t in _TOKEN_RE.findall(text))


def _key(tokens: Any) -> tuple[str, ...]:
    """Phrase-table key of tokens: hyphenated tokens count as their parts ("mid-tempo" = "mid tempo")."""
    return tuple(part for tok in tokens for part in tok.split("-"))


@dataclass(frozen=True)
class Claim:
    """One musical claim: its type, a normalised value (band, BPM, key, family...) and where it is."""

    type: str
    value: Any
    phrase: str
    start: int = 0
    end: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ClaimCheck:
    claim: Claim
    verdict: str  # "right" | "wrong" | "uncheckable"
    fact: Any = None

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- extraction


def _tokens(text: str) -> list[tuple[str, int, int]]:
    """Lowercase tokens with offsets; "rock-tinged" -> "rock", "tinged" (see ``compound_suffixes``)."""
    out = []
    for m in _TOKEN_RE.finditer(text.replace("’", "'")):
        tok, (a, b) = m.group().lower(), m.span()
        head, _, tail = tok.rpartition("-")
        if head and tail in lexicon()["compound_suffixes"]:
            out += [(head, a, a + len(head)), (tail, b - len(tail), b)]
        else:
            out.append((tok, a, b))
    return out


def _negated(toks: list[tuple[str, int, int]], i: int) -> bool:
    """A negator within NEGATION_WINDOW tokens before token ``i``, in the same clause."""
    neg = lexicon()["negators"]
    words: list[str] = []
    for tok, _, _ in reversed(toks[max(0, i - NEGATION_WINDOW):i]):
        if tok in _HARD or tok == "," or tok in _SOFT:
            break
        words.insert(0, tok)
        if tok.endswith("n't") or any(tuple(words[:len(n)]) == n for n in neg):
            return True
    return False


def _context(toks: list[tuple[str, int, int]], i: int, j: int, nouns: set[str]) -> str | None:
    """The music noun tokens i..j describe: the first noun after them, else before, in the clause.

    None when there is none, or when the first noun met is a visual one ("slow pan") or a
    section or next to one ("quiet verse", "the intro energy", "a gentle piano interlude"): a
    song can have a quiet intro, so section claims are not checked against song-level facts.
    """
    lex = lexicon()
    blocked = lex["visual_nouns"] | lex["section_nouns"]

    def noun_at(k: int) -> str | None:
        tok = toks[k][0]
        near = {toks[x][0] for x in (k - 1, k + 1) if 0 <= x < len(toks)}  # "intro energy", "piano interlude"
        if tok in blocked or (tok in nouns and near & blocked):
            return ""
        return tok if tok in nouns else None

    k, seen = j, 0
    while k < len(toks) and seen < FORWARD:
        tok = toks[k][0]
        if tok == "," and k + 1 < len(toks) and (toks[k + 1][0] == "and" or _key([toks[k + 1][0]]) in lex["phrases"]):
            k += 1
            continue
        if tok in _HARD or tok == ",":
            break
        found = noun_at(k)
        if found is not None:
            return found or None
        k, seen = k + 1, seen + 1
    for k in range(i - 1, max(-1, i - 1 - BACKWARD), -1):
        if toks[k][0] in _HARD or toks[k][0] == ",":
            return None
        found = noun_at(k)
        if found is not None:
            return found or None
    return None


def _video_follows(toks: list[tuple[str, int, int]], j: int) -> bool:
    """A video noun within FORWARD words after token j ("an animated, hand-drawn music video")."""
    words = 0
    for tok, _, _ in toks[j:]:
        if tok in _HARD or words >= FORWARD:
            return False
        if tok in lexicon()["video_nouns"]:
            return True
        words += tok != ","
    return False


def _pitch(letter: str, accidental: str | None) -> int:
    """Pitch class of a tonic; enharmonic spellings meet (F# = Gb = 6)."""
    acc = {"#": 1, "♯": 1, "sharp": 1, "b": -1, "♭": -1, "flat": -1}.get((accidental or "").lower(), 0)
    return (_PITCH[letter.lower()] + acc) % 12


def _number(words: list[str]) -> float | None:
    """English number words -> value: "a hundred and twenty" -> 120, "ninety-six" -> 96."""
    units, total, seen = lexicon()["number_words"], 0, False
    for n, w in enumerate(words):
        if w == "a" and n + 1 < len(words) and words[n + 1] == "hundred":
            total, seen = 1, True
        elif w == "hundred":
            total, seen = max(total, 1) * 100, True
        elif w in units:
            total, seen = total + units[w], True
    return float(total) if seen and total >= 20 else None


def extract_claims(text: str) -> list[Claim]:
    """Every non-negated musical claim in ``text``, in text order."""
    lex, toks = lexicon(), _tokens(text)
    starts = [t[1] for t in toks]
    claims: list[Claim] = []

    def keep(type_: str, value: Any, start: int, end: int) -> None:
        i = next((n for n, s in enumerate(starts) if s >= start), len(toks))
        if not _negated(toks, i):
            claims.append(Claim(type_, value, text[start:end], start, end))

    numwords = "|".join(["a", "and", "hundred", *lex["number_words"]])
    bpm_spans = []
    for m in _BPM_RE.finditer(text):
        lo, hi = float(m.group(1)), float(m.group(2) or m.group(1))
        keep("tempo", (min(lo, hi), max(lo, hi)), m.start(), m.end())
        bpm_spans.append(m.span())
    for m in _BPM_UNIT.finditer(text):
        if any(e == m.end() for _, e in bpm_spans):
            continue
        words = re.search(rf"((?:\b(?:{numwords})\b[\s-]*)+)$", text[: m.start()], re.IGNORECASE)
        value = _number(re.split(r"[\s-]+", words.group(1).lower().strip())) if words else None
        if words and value:
            keep("tempo", (value, value), words.start(), m.end())
    for m in _TEMPO_OF_RE.finditer(text):
        if not any(a <= m.start(1) < e for a, e in bpm_spans):  # "tempo of 120 BPM" is one claim
            keep("tempo", (float(m.group(1)),) * 2, m.start(), m.end())
    key_spans = []
    for m in _KEY_RE.finditer(text):
        before = text[: m.start()].rstrip()
        if m.group(1) == "A" and not (m.group(2) or m.group(3)) and (not before or before[-1] in ".!?:\n*"):
            continue  # sentence-initial "A major change ..." is an article, not a key
        mode = "minor" if m.group(4).lower().startswith("min") else "major"
        keep("key", (_pitch(m.group(1), m.group(2) or m.group(3)), mode), m.start(), m.end())
        key_spans.append((m.start(), m.end()))
    for m in _MODE_RE.finditer(text):
        if not any(s <= m.start() < e for s, e in key_spans):
            keep("key", (None, m.group(1).lower()), m.start(), m.end())
    for m in _METER_RE.finditer(text):
        if 2 <= int(m.group(1)) <= 12:
            keep("meter", f"{m.group(1)}/{m.group(2)}", m.start(), m.end())

    frames = _FRAMES_RE.search(text)
    overview_end = frames.start() if frames else len(text)
    i, mv_seen = 0, False
    while i < len(toks):
        if toks[i][0].split("-", 1)[0] not in lex["firsts"]:
            i += 1
            continue
        for n in range(min(lex["longest"], len(toks) - i), 0, -1):
            words = _key(t[0] for t in toks[i:i + n])
            if words in lex["phrases"]:
                break
        else:
            i += 1
            continue
        j, entries = i + n, lex["phrases"][words]
        span = (toks[i][1], toks[j - 1][2])
        kinds = {k for k, _ in entries}
        if "meter" in kinds:
            keep("meter", lex["meter_phrases"][" ".join(words)], *span)
        elif kinds & {"mv_type", "mv_type?"}:
            video = _video_follows(toks, j)
            if not mv_seen and span[0] < overview_end and ("mv_type" in kinds or video) and not _negated(toks, i):
                mv_seen = True
                keep("mv_type", entries[0][1], *span)
        elif kinds & {"genre", "genre?"}:
            if "genre" in kinds or _context(toks, i, j, lex["music_nouns"]):
                keep("genre", "|".join(sorted({label for _, label in entries})), *span)
        else:
            noun = None if words in lex["self_contained"] else _context(toks, i, j, lex["music_nouns"])
            if noun or words in lex["self_contained"]:
                tempo = [e for e in entries if e[0] == "tempo" and (noun in lex["tempo_nouns"]
                                                                     or words not in lex["tempo_noun_only"])]
                other = [e for e in entries if e[0] != "tempo"]
                if tempo or other:
                    kind, band = tempo[0] if tempo and (noun in lex["tempo_nouns"] or not other) else other[0]
                    keep(kind, band, *span)
        i = j
    return sorted(claims, key=lambda c: c.start)


# --------------------------------------------------------------------------- facts and checks


@dataclass(frozen=True)
class Facts:
    """What a dataset row measured; None where it did not (0 BPM, 0 beats per bar, key "unknown")."""

    tempo: float | None = None
    beats_per_bar: int | None = None
    key: tuple[int, str] | None = None  # (tonic pitch class, "major"/"minor")
    energy: float | None = None
    valence: float | None = None
    danceability: float | None = None
    mv_type: str | None = None
    genres: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, row: Any) -> "Facts":
        """From a dataset row dict (``music_features`` a dict or JSON string), an ``Example`` or Facts."""
        if isinstance(row, Facts):
            return row
        if hasattr(row, "model_dump"):
            row = row.model_dump()
        mf = row.get("music_features") or {}
        if isinstance(mf, str):
            mf = json.loads(mf)
        elif hasattr(mf, "model_dump"):
            mf = mf.model_dump()
        key = re.fullmatch(r"\s*([A-Ga-g])([#b]?)\s*(major|minor)\s*", str(mf.get("key") or ""), re.IGNORECASE)
        tempo, bpb, genres = _num(mf.get("tempo")), _num(mf.get("beats_per_bar")), row.get("genres")
        return cls(
            tempo=tempo or None, beats_per_bar=int(bpb) if bpb else None,
            key=(_pitch(key.group(1), key.group(2)), key.group(3).lower()) if key else None,
            energy=_num(mf.get("energy")), valence=_num(mf.get("valence")), danceability=_num(mf.get("danceability")),
            mv_type=row.get("mv_type") or None, genres=tuple(genres) if genres is not None else (),
        )


def _num(x: Any) -> float | None:
    """A measured number, or None for missing/NaN (parquet and pandas spell "unknown" both ways)."""
    return None if x is None or x != x else float(x)


def genre_families(genres: Sequence[str]) -> set[str]:
    """The families of free-text genres: a family word (or alias) occurring in a genre's words."""
    lex, out = lexicon(), set()
    aliases = {_words(k): v for k, v in lex["genre_row_aliases"].items()}
    for genre in genres:
        words = _words(genre)
        spans = {words[a:b] for a in range(len(words)) for b in range(a + 1, len(words) + 1)}
        for phrase in spans:
            out.update(label for kind, label in lex["phrases"].get(phrase, []) if kind in ("genre", "genre?"))
            if phrase in aliases:
                out.add(aliases[phrase])
    return out


def _meter_ok(value: str, bpb: int) -> bool:
    if value in ("duple", "triple"):
        return bpb in ((2, 4) if value == "duple" else (3,))
    num, den = (int(x) for x in value.split("/"))
    return bpb == num or (den == 8 and num % 3 == 0 and bpb == num // 3)


def _in_band(bands: dict, band: str, x: float) -> bool:
    lo, hi = bands[band]
    return (lo is None or x >= lo) and (hi is None or x <= hi)


def check_claim(claim: Claim, facts: Facts) -> ClaimCheck:
    t, v = claim.type, claim.value
    fact: Any = {"tempo": facts.tempo, "meter": facts.beats_per_bar, "energy": facts.energy, "mood": facts.valence,
                 "danceability": facts.danceability, "mv_type": facts.mv_type, "key": facts.key}.get(t)
    if t == "genre":
        fact = sorted(genre_families(facts.genres)) or None
    if fact is None:
        return ClaimCheck(claim, "uncheckable", None)
    if t == "tempo" and isinstance(v, tuple):
        slack = BPM_TOLERANCE * fact + 1e-9  # 4 % of the measured tempo
        ok = v[0] - slack <= fact <= v[1] + slack
    elif t in _BANDS:
        ok = _in_band(_BANDS[t], v, fact)
    elif t == "key":
        ok = v[1] == fact[1] and (v[0] is None or v[0] == fact[0])
    elif t == "meter":
        ok = _meter_ok(v, fact)
    elif t == "genre":
        ok = bool(set(v.split("|")) & set(fact))
    else:
        ok = v == fact
    return ClaimCheck(claim, "right" if ok else "wrong", fact)


def check_claims(claims: Sequence[Claim], facts: Facts | Mapping | Any) -> list[ClaimCheck]:
    """Each claim checked once: identical claims (same type and value) in one text count once."""
    facts, seen, out = Facts.from_row(facts), set(), []
    for c in claims:
        if (c.type, c.value) not in seen:
            seen.add((c.type, c.value))
            out.append(check_claim(c, facts))
    return out


def check_text(text: str, row: Facts | Mapping | Any) -> list[ClaimCheck]:
    return check_claims(extract_claims(text), row)


# --------------------------------------------------------------------------- corpus score


@dataclass
class TypeScore:
    coverage: float  # share of predictions with >= 1 checkable claim of this type
    precision: float | None  # right / checked claims; None when nothing was checked
    checked: int
    right: int


@dataclass
class FaithfulnessResult:
    """``score``: micro precision over all checked claims (each text's distinct claims);
    ``macro_precision``: mean of the per-type precisions that exist; values in 0..1."""

    n: int
    score: float | None
    macro_precision: float | None
    coverage: float  # share of predictions with >= 1 checkable claim of any type
    per_type: dict[str, TypeScore] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def music_faithfulness(predictions: Sequence[str], rows: Sequence[Any]) -> FaithfulnessResult:
    """Score predictions against their rows (dicts, ``Example``s or ``Facts``), pairwise in order."""
    if len(predictions) != len(rows):
        raise ValueError(f"{len(predictions)} predictions but {len(rows)} rows")
    checked = {t: 0 for t in CLAIM_TYPES}
    right = dict(checked)
    covered = dict(checked)
    any_claim = 0
    for text, row in zip(predictions, rows):
        checks = [c for c in check_text(text or "", row) if c.verdict != "uncheckable"]
        any_claim += bool(checks)
        for t in {c.claim.type for c in checks}:
            covered[t] += 1
        for c in checks:
            checked[c.claim.type] += 1
            right[c.claim.type] += c.verdict == "right"
    n = len(predictions)
    per_type = {t: TypeScore(covered[t] / n if n else 0.0, right[t] / checked[t] if checked[t] else None,
                             checked[t], right[t]) for t in CLAIM_TYPES}
    total = sum(checked.values())
    precisions = [s.precision for s in per_type.values() if s.precision is not None]
    return FaithfulnessResult(
        n=n, score=sum(right.values()) / total if total else None,
        macro_precision=sum(precisions) / len(precisions) if precisions else None,
        coverage=any_claim / n if n else 0.0, per_type=per_type,
    )
