"""The ``offline`` backend: deterministic, network-free stand-ins for the six LLM stages.

Every text is written from what the builder measured (madmom/librosa music features,
Music4All metadata, lyrics statistics, visual statistics), never invented from nothing:
a tempo in a caption is the tracked tempo, a chord in a beat is the chord sounding at
that frame's time. Phrasing varies between clips, chosen from a hash of the clip id, so
the corpus is not one template repeated; identical inputs give byte-identical outputs.

It is labelled honestly: ``model`` is "offline-template" (text stages) or
"offline-visual-stats" (vision stages), usage is zero, and every result carries
``notes["label"] = "offline heuristic text, not LLM output"``.
"""

from __future__ import annotations

import functools
import hashlib
import re
import statistics
import unicodedata
from collections import Counter
from typing import Any, Callable, Sequence

from builders.stages import Stage, StageInput, StageResult, Usage
from builders.textcheck import longest_shared_run
from mv4all.schema import (
    FrameCaption,
    FrameCaptions,
    LyricsUnderstanding,
    MusicCaption,
    MusicFeatures,
    MVBeat,
    MVDescription,
    MVTypeTag,
    Track,
    UnifiedMusicCaption,
    VisualStats,
)

PROMPT_VERSION = "offline-v1"
TEMPLATE_VERSION = 1
LABEL = "offline heuristic text, not LLM output"
MAX_LYRIC_RUN = 8  # the lyrics understanding never repeats more consecutive lyric words

TEXT_MODEL = "offline-template"
VISION_MODEL = "offline-visual-stats"


# =========================================================================== small helpers


class _Chooser:
    """Deterministic choices keyed by (salt, clip id, slot): varied but reproducible phrasing."""

    def __init__(self, clip_id: str, salt: str = "") -> None:
        self.key = f"{salt}|{clip_id}"

    def index(self, slot: str, n: int) -> int:
        digest = hashlib.sha256(f"{self.key}|{slot}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % max(n, 1)

    def pick(self, slot: str, options: Sequence[str]) -> str:
        return options[self.index(slot, len(options))]


def repr_tag(tag: str) -> str:
    return "'" + tag.replace("'", "") + "'"


def _a(phrase: str) -> str:
    """Indefinite article + phrase."""
    word = phrase.strip().lower()
    vowel = word[:1] in "aeiou" and not word.startswith(("uni", "euro", "one"))
    if word.startswith(("hour", "honest", "8", "11", "18", "80")):
        vowel = True
    return f"{'an' if vowel else 'a'} {phrase.strip()}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _lower_first(text: str) -> str:
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text


def _join(items: Sequence[str], conj: str = "and") -> str:
    items = [i for i in items if i]
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {conj} {items[-1]}"


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+", (text or "").strip())
    return [p.strip() for p in parts if p.strip()]


def _clean_line(text: str) -> str:
    """One line of plain text: no newlines, no markdown emphasis markers, single spaces."""
    text = (text or "").replace("**", "").replace("__", "")
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"^\s*(?:[-*]\s*)?\d+\s*[.)]\s*", "", text)  # a leading "3." would read as a list item
    return text.strip()


def _end(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _num(value: float | None) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


# =========================================================================== music facts

_NOTE_PC = {
    "C": 0, "B#": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "Fb": 4, "E#": 5, "F": 5,
    "F#": 6, "Gb": 6, "G": 7, "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11, "Cb": 11,
}  # fmt: skip
_QUALITY_SUFFIX = {"maj": "", "min": "m", "dim": "dim", "aug": "aug", "7": "7", "maj7": "maj7", "min7": "m7", "sus4": "sus4", "sus2": "sus2"}
_DEGREES = ["I", "bII", "II", "bIII", "III", "IV", "#IV", "V", "bVI", "VI", "bVII", "VII"]
_DEGREES_MINOR = ["I", "bII", "II", "III", "#III", "IV", "#IV", "V", "VI", "#VI", "VII", "#VII"]
_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}


def _parse_chord(label: str) -> tuple[str, str] | None:
    label = (label or "").strip()
    if not label or label in ("N", "X"):
        return None
    root, _, quality = label.partition(":")
    if root not in _NOTE_PC:
        m = re.match(r"^([A-G][#b]?)(.*)$", label)
        if not m:
            return None
        root, rest = m.group(1), m.group(2)
        quality = "min" if rest.startswith("m") and not rest.startswith("maj") else (rest or "maj")
    return root, (quality or "maj")


def pretty_chord(label: str) -> str:
    """madmom "A:min" -> "Am", "C:maj" -> "C", "N" -> "N"."""
    parsed = _parse_chord(label)
    if parsed is None:
        return "N"
    root, quality = parsed
    return root + _QUALITY_SUFFIX.get(quality, quality if quality.startswith(("m", "7", "9", "s", "a", "d")) else "")


def _parse_key(key: str) -> tuple[int, str] | None:
    m = re.match(r"^\s*([A-G][#b]?)\s*[: ]?\s*(major|minor|maj|min)?", key or "", re.IGNORECASE)
    if not m or m.group(1) not in _NOTE_PC:
        return None
    mode = (m.group(2) or "major").lower()
    return _NOTE_PC[m.group(1)], ("minor" if mode.startswith("min") else "major")


def _roman(label: str, key: tuple[int, str] | None) -> str | None:
    parsed = _parse_chord(label)
    if parsed is None or key is None:
        return None
    root, quality = parsed
    interval = (_NOTE_PC[root] - key[0]) % 12
    degree = (_DEGREES_MINOR if key[1] == "minor" else _DEGREES)[interval]
    if quality.startswith("min") or quality == "dim":
        degree = degree.lower()
    if quality == "dim":
        degree += "°"
    return degree


class MusicFacts:
    """Everything the captions say about the music, computed once per clip from measurements."""

    def __init__(self, features: MusicFeatures, track: Track | None, choose: _Chooser) -> None:
        self.f = features
        self.track = track
        self.choose = choose
        self.tempo = float(features.tempo)
        self.bpb = max(int(features.beats_per_bar or 0), 0)
        self.beat_len = 60.0 / self.tempo if self.tempo > 0 else None
        self.bar_len = self.beat_len * self.bpb if self.beat_len and self.bpb else None
        self.energy = _num(features.energy) if features.energy is not None else _num(track.energy if track else None)
        self.valence = _num(features.valence) if features.valence is not None else _num(track.valence if track else None)
        self.danceability = (
            _num(features.danceability) if features.danceability is not None else _num(track.danceability if track else None)
        )
        self.key = _parse_key(features.key)
        self._chords()

    # ---------------------------------------------------------------- tempo, meter, key

    def tempo_word(self) -> str:
        t = self.tempo
        table = [
            (66, ("slow", "unhurried", "languid")),
            (80, ("relaxed", "gentle", "easygoing")),
            (100, ("laid-back", "moderate", "easy-rolling")),
            (115, ("moderate", "steady", "walking-pace")),
            (130, ("upbeat", "lively", "driving")),
            (150, ("brisk", "energetic", "quick")),
            (170, ("brisk", "fast", "racing")),
            (10_000, ("very fast", "breakneck", "frantic")),
        ]
        for limit, words in table:
            if t < limit:
                return self.choose.pick("tempo-word", words)
        return "fast"

    def tempo_phrase(self) -> str:
        """e.g. "a brisk 150 BPM"."""
        if self.tempo <= 0:
            return "an untracked tempo"
        return _a(f"{self.tempo_word()} {round(self.tempo)} BPM")

    def meter(self) -> str:
        if self.bpb <= 0:
            return "an undetermined meter"
        if self.bpb == 3:
            return self.choose.pick("meter", ("3/4 time", "a lilting 3/4", "waltz-like triple meter (3/4)"))
        if self.bpb == 4:
            return self.choose.pick("meter", ("4/4 time", "common 4/4 time", "a straight 4/4"))
        if self.bpb == 6:
            return "6/8 time"
        return f"{self.bpb}/4 time"

    def key_phrase(self) -> str:
        key = (self.f.key or "").strip()
        if not key or self.key is None:
            return "without a clear tonal centre"
        conf = float(self.f.key_confidence)
        if conf >= 0.5:
            return f"in {key}"
        if conf >= 0.25:
            return f"centred on {key}"
        return f"loosely in {key}"

    # ---------------------------------------------------------------- chords

    def _chords(self) -> None:
        segs: list[tuple[str, float, float]] = []
        for c in sorted(self.f.chords, key=lambda c: (c.start, c.end)):
            name = pretty_chord(c.label)
            if name == "N":
                continue
            if segs and segs[-1][0] == name:
                segs[-1] = (name, segs[-1][1], c.end)
            else:
                segs.append((name, c.start, c.end))
        self.segments = segs
        self.sequence = [s[0] for s in segs]
        vocab: list[str] = []
        for name in self.sequence:
            if name not in vocab:
                vocab.append(name)
        self.vocabulary = vocab
        raw_by_name = {}
        for c in self.f.chords:
            raw_by_name.setdefault(pretty_chord(c.label), c.label)
        self._raw = raw_by_name
        self.loop: list[str] | None = None
        seq = self.sequence
        for p in range(1, min(8, len(seq) // 2) + 1):
            if all(seq[i] == seq[i % p] for i in range(len(seq))):
                self.loop = seq[:p]
                break

    def roman_of(self, names: Sequence[str]) -> str | None:
        numerals = [_roman(self._raw.get(n, n), self.key) for n in names]
        if any(n is None for n in numerals):
            return None
        return "-".join(numerals)  # type: ignore[arg-type]

    def progression_phrase(self) -> str:
        if not self.sequence:
            return "no clearly tracked chords"
        if self.loop and len(self.loop) == 1:
            return f"a sustained {self.loop[0]} drone"
        if self.loop:
            roman = self.roman_of(self.loop)
            count = _NUMBER_WORDS.get(len(self.loop), str(len(self.loop)))
            roman_part = f" ({roman})" if roman else ""
            return self.choose.pick(
                "loop",
                (
                    f"a looping {count}-chord progression of {'-'.join(self.loop)}{roman_part}",
                    f"a repeating {'-'.join(self.loop)}{roman_part} cycle",
                    f"a cyclical {count}-chord pattern, {'-'.join(self.loop)}{roman_part}",
                ),
            )
        shown = self.vocabulary[:6]
        more = f" among {len(self.vocabulary)} distinct chords" if len(self.vocabulary) > 6 else ""
        return f"chords moving through {_join(shown)}{more}"

    def harmonic_rhythm(self) -> str:
        if len(self.segments) < 2 or not self.bar_len:
            return "with little harmonic movement"
        durations = [e - s for _, s, e in self.segments[:-1]] or [self.segments[0][2] - self.segments[0][1]]
        ratio = statistics.median(durations) / self.bar_len
        if ratio < 0.75:
            return "changing more than once per bar"
        if ratio < 1.5:
            return "changing roughly every bar"
        if ratio < 3:
            return "changing about every two bars"
        return "with long, slowly shifting chords"

    def chord_at(self, t: float) -> str | None:
        for c in self.f.chords:
            if c.start <= t < c.end:
                name = pretty_chord(c.label)
                return None if name == "N" else name
        if self.f.chords and t >= self.f.chords[-1].end:
            name = pretty_chord(self.f.chords[-1].label)
            return None if name == "N" else name
        return None

    def minor_share(self) -> float:
        if not self.sequence:
            return 0.0
        return sum(1 for n in self.sequence if n.endswith("m") or "m7" in n or "dim" in n) / len(self.sequence)

    # ---------------------------------------------------------------- rhythm

    def pulse(self) -> str:
        s = float(self.f.tempo_strength)
        if s >= 0.75:
            return self.choose.pick("pulse", ("a strong, unambiguous pulse", "a firm, clearly defined beat"))
        if s >= 0.45:
            return self.choose.pick("pulse", ("a clear, steady pulse", "a well-defined beat"))
        return self.choose.pick("pulse", ("a loose, less defined pulse", "a soft-edged, elastic beat"))

    def downbeat_regularity(self) -> float | None:
        d = sorted(self.f.downbeats)
        if len(d) < 3:
            return None
        gaps = [b - a for a, b in zip(d, d[1:]) if b > a]
        if len(gaps) < 2 or statistics.mean(gaps) <= 0:
            return None
        return statistics.pstdev(gaps) / statistics.mean(gaps)

    def downbeats(self) -> str:
        cv = self.downbeat_regularity()
        if cv is None:
            return "downbeats that are hard to pin down"
        gap = statistics.median([b - a for a, b in zip(sorted(self.f.downbeats), sorted(self.f.downbeats)[1:])])
        if cv < 0.04:
            return f"rock-steady downbeats every {gap:.1f} seconds"
        if cv < 0.12:
            return f"mostly regular downbeats about {gap:.1f} seconds apart"
        return "shifting, irregular downbeats"

    def percussion(self) -> str:
        lib = self.f.librosa
        pr, onsets = float(lib.percussive_ratio), float(lib.onset_rate)
        if pr >= 0.55:
            body = "a drum-heavy, percussive drive"
        elif pr >= 0.35:
            body = "a balance of percussion and sustained tones"
        else:
            body = "smooth, mostly sustained textures"
        if onsets >= 4:
            return f"{body} with busy, dense note onsets"
        if onsets <= 1.5:
            return f"{body} with sparse attacks"
        return body

    # ---------------------------------------------------------------- timbre

    def brightness(self) -> str:
        c = float(self.f.librosa.spectral_centroid_hz)
        if c < 1200:
            return self.choose.pick("bright", ("dark and warm", "warm, low-lit"))
        if c < 2000:
            return self.choose.pick("bright", ("mellow and rounded", "soft and rounded"))
        if c < 3200:
            return self.choose.pick("bright", ("balanced and clear", "clear and open"))
        return self.choose.pick("bright", ("bright and crisp", "bright, airy and crisp"))

    def dynamics(self) -> str:
        lib = self.f.librosa
        dr, loud = float(lib.dynamic_range_db), float(lib.loudness_db)
        if dr < 6:
            body = "tightly compressed dynamics"
        elif dr < 12:
            body = "moderate dynamic movement"
        else:
            body = "wide dynamic swings"
        if loud > -10:
            return f"{body} at a loud overall level"
        if loud < -25:
            return f"{body} at a quiet overall level"
        return body

    def texture(self) -> str:
        flat = float(self.f.librosa.spectral_flatness)
        if flat > 0.25:
            return "a noisy, distorted edge"
        if flat > 0.1:
            return "some grit in the texture"
        return "clean, tonal textures"

    # ---------------------------------------------------------------- mood

    def valence_word(self) -> str:
        v = self.valence
        if v is None:
            return "emotionally ambiguous" if self.minor_share() < 0.5 else "minor-leaning"
        if v < 0.3:
            return self.choose.pick("valence", ("dark and sombre", "brooding and sombre"))
        if v < 0.5:
            return self.choose.pick("valence", ("bittersweet", "melancholic"))
        if v < 0.7:
            return self.choose.pick("valence", ("warm and positive", "upbeat and warm"))
        return self.choose.pick("valence", ("bright and joyful", "euphoric and sunny"))

    def energy_np(self) -> str:
        e = self.energy
        if e is None or 0.3 <= e < 0.55:
            return "moderate energy"
        if e < 0.3:
            return self.choose.pick("energy-np", ("low energy", "a subdued energy level"))
        if e < 0.8:
            return self.choose.pick("energy-np", ("high energy", "plenty of energy"))
        return self.choose.pick("energy-np", ("intense, high energy", "relentless energy"))

    def dance(self) -> str:
        """A noun phrase about danceability."""
        d = self.danceability
        if d is None:
            return "a groove that leans on its rhythm section"
        if d >= 0.75:
            return self.choose.pick("dance", ("a highly danceable groove", "a groove built for the dance floor"))
        if d >= 0.55:
            return "a groove that invites movement"
        if d >= 0.4:
            return "a moderate, head-nodding groove"
        return "a feel more suited to listening than dancing"

    def tag_clause(self) -> str:
        tags = self.descriptors()
        if not tags:
            return ""
        return f", in keeping with listener tags such as {_join([repr_tag(t) for t in tags])}"

    def tone(self) -> str:
        e = self.energy if self.energy is not None else 0.5
        v = self.valence if self.valence is not None else 0.5
        if e >= 0.6:
            return "euphoric and celebratory" if v >= 0.6 else ("aggressive and tense" if v < 0.4 else "driving and urgent")
        if e < 0.4:
            return "warm and serene" if v >= 0.6 else ("melancholic and introspective" if v < 0.4 else "calm and reflective")
        return "upbeat and playful" if v >= 0.6 else ("brooding and moody" if v < 0.4 else "bittersweet and grounded")

    def numbers(self) -> str:
        parts = []
        for name, value in (("energy", self.energy), ("valence", self.valence), ("danceability", self.danceability)):
            if value is not None:
                parts.append(f"{name} at {value:.2f}")
        return _join(parts)

    # ---------------------------------------------------------------- identity (metadata)

    def _genres(self) -> list[str]:
        genres = [g.strip() for g in (self.track.genres if self.track else []) if g.strip()]
        if self.track is not None and self.track.instrumental:  # "instrumental" is said by kind()
            genres = [g for g in genres if g.lower() != "instrumental"]
        return genres

    def genre(self) -> str:
        """A genre modifier, e.g. "synthpop" or "rock-tinged punk"."""
        genres = self._genres()
        if not genres:
            return ""
        if len(genres) == 1:
            return genres[0]
        first, second = genres[0], genres[1]
        if first in second or second in first:
            return second if len(second) > len(first) else first
        return self.choose.pick("genre", (f"{second}-tinged {first}", f"{first} and {second}", f"{first}"))

    def main_genre(self) -> str:
        genres = self._genres()
        return genres[0] if genres else ""

    def descriptors(self) -> list[str]:
        if not self.track:
            return []
        genres = {g.lower() for g in self.track.genres}
        return [t.strip() for t in self.track.tags if t.strip() and t.strip().lower() not in genres][:3]

    def kind(self) -> str:
        if self.track is not None and self.track.instrumental:
            return self.choose.pick("kind", ("instrumental", "instrumental piece"))
        return self.choose.pick("kind", ("track", "song", "tune"))

    def vocals(self) -> str:
        if self.track is None or self.track.instrumental:
            return ""
        name = _LANGUAGE_NAMES.get(self.track.lang.strip().lower())
        return f", sung in {name}" if name else ""


_LANGUAGE_NAMES = {
    "en": "English", "es": "Spanish", "ko": "Korean", "pt": "Portuguese", "fr": "French", "de": "German",
    "it": "Italian", "ja": "Japanese", "zh": "Chinese", "nl": "Dutch", "sv": "Swedish", "ru": "Russian",
}  # fmt: skip


# =========================================================================== music caption


def write_music_caption(features: MusicFeatures, track: Track | None, choose: _Chooser) -> str:
    m = MusicFacts(features, track, choose)
    genre, kind = m.genre(), m.kind()
    described = genre
    tp, meter, vocals = m.tempo_phrase(), m.meter(), m.vocals()

    opening = choose.pick(
        "s1",
        (
            f"{_cap(_a(f'{described} {kind}' if described else kind))} moving at {tp} in {meter}{vocals}.",
            f"This {described + ' ' if described else ''}{kind} sits at {tp}, counted in {meter}{vocals}.",
            f"Set at {tp} in {meter}, this is {_a(f'{described} {kind}' if described else kind)}{vocals}.",
        ),
    )
    harmony = (
        f"The harmony is hard to pin down, {m.key_phrase()}, with no clearly tracked chords."
        if not m.sequence
        else None
    ) or choose.pick(
        "s2",
        (
            f"Harmonically it stays {m.key_phrase()}, built on {m.progression_phrase()}, {m.harmonic_rhythm()}.",
            f"The harmony sits {m.key_phrase()}: {m.progression_phrase()}, {m.harmonic_rhythm()}.",
            f"{_cap(m.progression_phrase())} anchors the music {m.key_phrase()}, {m.harmonic_rhythm()}.",
        ),
    )
    rhythm = choose.pick(
        "s3",
        (
            f"The rhythm has {m.pulse()}, with {m.downbeats()} and {m.percussion()}.",
            f"Rhythmically there is {m.pulse()} and {m.downbeats()}, carried by {m.percussion()}.",
            f"{_cap(m.percussion())} rides on {m.pulse()}, with {m.downbeats()}.",
        ),
    )
    timbre = choose.pick(
        "s4",
        (
            f"Its sound is {m.brightness()}, with {m.dynamics()} and {m.texture()}.",
            f"Sonically the mix feels {m.brightness()}, showing {m.dynamics()} and {m.texture()}.",
            f"The timbre is {m.brightness()}; expect {m.dynamics()} and {m.texture()}.",
        ),
    )
    mood = choose.pick(
        "s5",
        (
            f"Overall the mood is {m.valence_word()}, with {m.energy_np()} and {m.dance()}{m.tag_clause()}.",
            f"The result feels {m.valence_word()}, carrying {m.energy_np()} and {m.dance()}{m.tag_clause()}.",
            f"Emotionally it comes across as {m.valence_word()}, with {m.energy_np()} and {m.dance()}{m.tag_clause()}.",
        ),
    )
    middle = [harmony, rhythm, timbre]
    if choose.index("merge", 3) == 0:  # sometimes four sentences instead of five
        middle = [harmony, f"The rhythm has {m.pulse()} and {m.percussion()}, while the sound is {m.brightness()}, with {m.dynamics()}."]
    orders = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (2, 0, 1), (1, 2, 0))
    order = [i for i in orders[choose.index("order", len(orders))] if i < len(middle)]
    body = [middle[i] for i in order]
    return " ".join([opening, *body, mood])


# =========================================================================== lyrics understanding

# The backend's own multilingual theme lexicon (independent of the sample lyrics generator).
# English/Spanish entries match whole words (plus simple inflections); Korean entries match a
# noun followed by a particle, or any continuation when they end in "*".
THEMES: dict[str, dict[str, Any]] = {
    "love": {"name": "love", "mood": "romantic", "en": "love lover lovers darling baby heart hearts kiss kisses embrace sweetheart honey romance adore beloved forever darling arms", "es": "amor amores amar amarte quiero querer corazón beso besos besar cariño enamorado enamorados enamorada amante", "ko": "사랑* 좋아해* 연인 키스 설레* 안아* 마음* 맘*"},
    "heartbreak": {"name": "heartbreak", "mood": "aching", "en": "heartbreak heartbroken broken goodbye tears tear cry crying leaving shattered hurt pain forget", "es": "lágrimas llorar lloro lloras adiós rompiste roto rota rotos dolor olvido olvidar pierdo perder", "ko": "이별* 눈물* 울어* 아픈 아파* 안녕 잊어* 부서* 뒤돌아*"},
    "night": {"name": "the night", "mood": "nocturnal", "en": "night nights tonight midnight moon moonlight stars starlight dark darkness dawn evening neon streetlights", "es": "noche noches luna estrellas oscuridad madrugada amanecer nocturno nocturnos", "ko": "밤* 달빛 별빛 별 새벽 어둠 tonight"},
    "memory": {"name": "memory and nostalgia", "mood": "wistful", "en": "remember memory memories yesterday past photograph photographs polaroid faded nostalgia nostalgic", "es": "recuerdo recuerdos recordar ayer pasado foto vieja aquel nostalgia", "ko": "기억* 추억* 어제 그때 옛날 사진"},
    "rebellion": {"name": "rebellion", "mood": "defiant", "en": "riot rebel rebels rebellion fist rules barricades refuse kneel revolution defiant", "es": "rebelde lucha luchar cadenas revolución grito gritar", "ko": "반항* 소리쳐* 부숴* 싸워*"},
    "freedom": {"name": "freedom", "mood": "liberated", "en": "free freedom fly wings cage escape untamed horizon weightless", "es": "libre libres libertad volar vuelo alas viento cadenas cielo", "ko": "자유* 날아* 날개 하늘 바람"},
    "nature": {"name": "nature", "mood": "peaceful", "en": "river tree trees willow meadow field fields mountain mountains pine pines forest dew stream wildflowers flowers clover", "es": "río árbol árboles montaña bosque flores campo", "ko": "숲 나무 강물 산 꽃*"},
    "home": {"name": "home and belonging", "mood": "comforting", "en": "home homesick porch kitchen mother father fireplace belong belonging", "es": "hogar casa madre padre volver vuelta", "ko": "집 고향 엄마 돌아가*"},
    "dance": {"name": "dancing", "mood": "euphoric", "en": "dance dancing dancer floor rhythm beat beats bassline body move groove spin club", "es": "baila bailar bailo bailando ritmo pista música cuerpo muevo muévete compás caderas", "ko": "춤* 댄스 리듬* 비트 무대 흔들어* 스텝 dance step beat"},
    "dreams": {"name": "dreams", "mood": "dreamy", "en": "dream dreams dreaming sleep asleep clouds cloud float floating drift kaleidoscope wake surreal", "es": "sueño sueños soñar soñando nubes despiertes floto", "ko": "꿈* 구름 잠* 무지개 dreaming dream"},
    "time": {"name": "the passing of time", "mood": "urgent", "en": "clock clocks hour hours hourglass tomorrow seconds minute seasons", "es": "tiempo reloj horas mañana segundos", "ko": "시간 시계 내일 영원*"},
    "city": {"name": "city life", "mood": "restless", "en": "city streets street concrete subway avenue corner blocks downtown urban", "es": "ciudad calle calles barrio", "ko": "도시* 거리* 골목*"},
    "struggle": {"name": "struggle and perseverance", "mood": "determined", "en": "struggle fighting survive grind rent weight load uphill tired hungry", "es": "lucha sobrevivir trabajo cansado", "ko": "버텨* 견뎌* 힘들*"},
    "childhood": {"name": "childhood", "mood": "playful", "en": "kid kids child children toy toys playground swing kite crayons carousel parade play fort", "es": "niño niños infancia juguete jugar", "ko": "어린* 장난감 놀이*"},
    "joy": {"name": "joy", "mood": "joyful", "en": "joy happy happiness smile laugh laughter sing sunshine clap cheerful celebrate balloons", "es": "alegría feliz felices sonrisa reír canta canto cantar fiesta", "ko": "행복* 웃어* 웃음* 기쁨* 노래해* 축제 햇살 happy"},
    "anger": {"name": "anger", "mood": "furious", "en": "anger angry rage raging fury furious burn burning fire scream hate storm violent clenched", "es": "rabia ira odio fuego quemar gritar", "ko": "분노* 화가* 불타* 미워*"},
    "war": {"name": "war", "mood": "grim", "en": "war battle battlefield soldier soldiers sword shield iron blood cannons march surrender retreat horde", "es": "guerra batalla soldado sangre espada", "ko": "전쟁* 싸움* 전사*"},
    "summer": {"name": "summer", "mood": "carefree", "en": "summer sun sunny beach august heat lemonade fireflies coast swim golden", "es": "verano sol playa calor", "ko": "여름* 해변* 햇살"},
    "loneliness": {"name": "loneliness", "mood": "lonely", "en": "loneliness lonely alone empty silent nobody shadow", "es": "sola soledad vacío nadie", "ko": "혼자* 외로* 빈 홀로*"},
    "distance": {"name": "distance and longing", "mood": "yearning", "en": "far distance distant miles postcard airport apart miss longing", "es": "lejos distancia extraño", "ko": "멀리* 그리워* 보고싶*"},
    "journey": {"name": "the open road", "mood": "restless", "en": "road roads backroad highway drive driving truck gravel journey", "es": "camino carretera viaje", "ko": "길 여행* 떠나*"},
    "friendship": {"name": "friendship", "mood": "warm", "en": "friend friends friendship brothers campfire loyal", "es": "amigo amigos amistad juntos", "ko": "친구* 우정* 함께"},
    "adventure": {"name": "adventure", "mood": "adventurous", "en": "adventure treasure map explore level quest rocket island unknown", "es": "aventura tesoro explorar", "ko": "모험* 탐험*"},
    "sea": {"name": "the sea", "mood": "expansive", "en": "sea ocean waves wave tide lighthouse harbor shore ships sail salty bay", "es": "mar marea olas ola faro orilla puerto navego navegar horizonte", "ko": "바다* 파도* 등대* 바닷* ocean"},
    "hope": {"name": "hope", "mood": "hopeful", "en": "hope shine believe somehow", "es": "esperanza luz brillar creer", "ko": "희망* 빛* 믿어*"},
}

# Concrete images, glossed into English so the summary never quotes lines.
IMAGERY: dict[str, dict[str, str]] = {
    "en": {w: w for w in (
        "moon moonlight stars sky sea ocean waves river rain fire flames streetlight streetlights neon city street streets road "
        "highway train car truck rose roses flower flowers tree willow mountain field meadow sun sunshine beach window mirror "
        "photograph polaroid letter clock hourglass lighthouse harbor ship ships bird wings chains wall glass smoke sword "
        "cathedral guitar kite balloons toy carousel castle clouds kaleidoscope storm shadow shadows door porch candle kitchen "
        "campfire map rocket island bed room chair phone postcard airport tears dew stars bassline subway"
    ).split()},
    "es": {
        "luna": "moon", "estrellas": "stars", "cielo": "sky", "mar": "sea", "olas": "waves", "marea": "tide", "faro": "lighthouse",
        "orilla": "shore", "puerto": "harbour", "lluvia": "rain", "fuego": "fire", "rosa": "rose", "sol": "sun", "ciudad": "city",
        "calle": "street", "camino": "road", "viento": "wind", "alas": "wings", "cadenas": "chains", "nubes": "clouds",
        "castillo": "castle", "arena": "sand", "foto": "photograph", "carta": "letter", "ojos": "eyes", "labios": "lips",
        "beso": "kiss", "pista": "dance floor", "plaza": "town square", "lágrimas": "tears", "caderas": "hips",
        "horizonte": "horizon", "verano": "summer", "noche": "night sky",
    },
    "ko": {
        "달빛": "moonlight", "별빛": "starlight", "별": "stars", "밤하늘": "night sky", "하늘": "sky", "바다": "sea", "파도": "waves",
        "등대": "lighthouse", "바닷바람": "sea breeze", "장미": "roses", "조명": "stage lights", "무대": "stage", "눈물": "tears",
        "빗소리": "rain", "구름": "clouds", "무지개": "rainbow", "햇살": "sunlight", "도시": "city", "불빛": "lights",
        "미소": "smile", "눈빛": "gaze", "방": "room", "꽃": "flowers", "거리": "streets",
    },
}

MOOD_WORDS: dict[str, dict[str, str]] = {
    "positive": {
        "en": "love happy joy smile free alive bright sunshine sweet golden dream shine laugh hope warm safe together kiss darling home sing heaven beautiful glow darling",
        "es": "amor feliz felices alegría sonrisa libre libres dulce bonito bonita sol luz beso cielo sueño canta vivir",
        "ko": "사랑* 행복* 웃음* 웃어* 미소 설레* 달콤* 빛나* 눈부신 함께 자유* 신나*",
    },
    "negative": {
        "en": "cry tears broken alone lonely cold dark pain hurt lost fade fading empty goodbye die blood rage burn scream hollow silence shattered bleeding war hate",
        "es": "lágrimas llorar lloro roto rota rotos rompiste frío oscuridad dolor adiós perdido perdidos silencio caer",
        "ko": "눈물* 이별* 아픈 아파* 차가운 부서* 울어* 혼자* 잊어* 외로*",
    },
}

_KO_PARTICLES = {
    "", "을", "를", "이", "가", "은", "는", "의", "에", "에서", "에게", "도", "로", "으로", "와", "과", "처럼", "까지",
    "만", "야", "아", "랑", "이랑", "뿐", "뿐이야", "속", "속에", "속에서", "속으로", "위로", "아래", "아래서", "이야", "들",
}  # fmt: skip

_STOPWORDS = set(
    "the a an and or but of to in on at for with from by is are was were be been it its this that i me my you your we us our "
    "he she they them his her their oh yeah la na so all just like when what why how not no yes can can't don't won't i'm "
    "you're it's let me up down out into over under again still every there here then than too very"
    " el la los las un una y o de del que en con por para es son mi tu te me se lo le no sí ya muy más como qué ay".split()
)

_PRONOUNS: dict[str, dict[str, set[str]]] = {
    "en": {
        "i": {"i", "me", "my", "mine", "myself"},
        "you": {"you", "your", "yours", "yourself"},
        "we": {"we", "us", "our", "ours", "ourselves"},
        "they": {"he", "she", "him", "her", "his", "they", "them", "their"},
    },
    "es": {
        "i": {"yo", "mi", "mí", "mis", "conmigo", "me"},
        "you": {"tú", "tu", "tus", "ti", "te", "contigo", "usted"},
        "we": {"nosotros", "nosotras", "nuestro", "nuestra", "nuestros", "quedamos", "volveremos"},
        "they": {"él", "ella", "ellos", "ellas"},
    },
    "ko": {
        "i": {"나", "내", "난", "날", "나의", "나를", "나는", "내가", "저", "제가"},
        "you": {"너", "네", "넌", "널", "당신", "너의", "너를", "너와", "너만", "너에게", "너뿐이야", "너뿐"},
        "we": {"우리", "우린", "우리의", "우리는", "우릴"},
        "they": {"그", "그녀", "그들"},
    },
}

_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


_HANGUL_RE = re.compile("[\uac00-\ud7a3]")


def _is_hangul(token: str) -> bool:
    return _HANGUL_RE.search(token) is not None


def _tokens(text: str) -> list[str]:
    return [t.lower() for t in _WORD_RE.findall(text or "")]


def _en_forms(token: str) -> set[str]:
    forms = {token, token.replace("'", "")}
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e"), ("'s", "")):
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            forms.add(token[: -len(suffix)] + repl)
    return forms


@functools.lru_cache(maxsize=65536)
def _forms(token: str) -> frozenset[str]:
    """Accent-free simple inflection forms of a Latin-script token (cached: lyrics repeat)."""
    return frozenset(_en_forms(_strip_accents(token)))


def _matches(token: str, entry: str) -> bool:
    """Does a lyric token match a lexicon entry (language-aware, see THEMES)."""
    if _is_hangul(entry):
        if entry.endswith("*"):
            return token.startswith(entry[:-1])
        return token.startswith(entry) and token[len(entry) :] in _KO_PARTICLES
    entry = entry.rstrip("*")
    plain = _strip_accents(token)
    return entry == token or _strip_accents(entry) in _en_forms(plain)


class _Lexicon:
    """Fast lookups for the word lists above (exact forms; Hangul entries by prefix)."""

    def __init__(self, words: Sequence[str]) -> None:
        self.exact = {_strip_accents(w.rstrip("*")) for w in words if not _is_hangul(w)}
        self.hangul = [w for w in words if _is_hangul(w)]

    def hit(self, token: str) -> bool:
        if _is_hangul(token):
            return any(_matches(token, e) for e in self.hangul)
        return not self.exact.isdisjoint(_forms(token))


def _all_words(entry: dict[str, Any]) -> list[str]:
    return [w for lang in ("en", "es", "ko") for w in entry.get(lang, "").split()]


_THEME_LEX = {name: _Lexicon(_all_words(entry)) for name, entry in THEMES.items()}
_MOOD_LEX = {k: _Lexicon([w for lang in v.values() for w in lang.split()]) for k, v in MOOD_WORDS.items()}


def detect_themes(text: str, limit: int = 3) -> list[str]:
    """Theme keys found in ``text`` (lyrics in en/es/ko, or an English summary), strongest first."""
    tokens = _tokens(text)
    scores: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        for name, lex in _THEME_LEX.items():
            if lex.hit(tok):
                scores[name] = scores.get(name, 0) + 1
                first.setdefault(name, i)
    if not scores:
        return []
    top = max(scores.values())
    ranked = sorted(scores, key=lambda n: (-scores[n], first[n], n))
    return [n for n in ranked if scores[n] >= max(2, 0.34 * top) or n == ranked[0]][:limit]


_THEME_NAME_WORDS: dict[str, str] = {
    "love": "love", "romance": "love", "heartbreak": "heartbreak", "night": "night", "nightlife": "night",
    "memory": "memory", "memories": "memory", "nostalgia": "memory", "rebellion": "rebellion", "defiance": "rebellion",
    "freedom": "freedom", "nature": "nature", "home": "home", "belonging": "home", "dancing": "dance", "dance": "dance",
    "dreams": "dreams", "dream": "dreams", "dreaming": "dreams", "time": "time", "city": "city", "struggle": "struggle",
    "perseverance": "struggle", "childhood": "childhood", "joy": "joy", "happiness": "joy", "anger": "anger", "rage": "anger",
    "war": "war", "summer": "summer", "loneliness": "loneliness", "isolation": "loneliness", "distance": "distance",
    "longing": "distance", "road": "journey", "journey": "journey", "travel": "journey", "friendship": "friendship",
    "adventure": "adventure", "sea": "sea", "ocean": "sea", "hope": "hope",
}  # fmt: skip


def themes_from_summary(text: str, limit: int = 3) -> list[str]:
    """Theme keys an English lyrics summary names (offline or LLM-written), in order of mention."""
    out: list[str] = []
    for tok in _tokens(text):
        key = _THEME_NAME_WORDS.get(tok)
        if key and key not in out:
            out.append(key)
    return out[:limit]


def detect_language(lyrics: str, hint: str = "") -> tuple[str, bool]:
    """(language code, mixed-with-English) from the script and function words of the lyrics."""
    hangul = sum(1 for c in lyrics if 0xAC00 <= ord(c) <= 0xD7A3)
    latin_words = [t for t in _tokens(lyrics) if not _is_hangul(t) and t.isalpha()]
    if hangul and hangul >= 0.2 * (hangul + sum(len(w) for w in latin_words)):
        return "ko", len(latin_words) >= 3
    accents = sum(1 for c in lyrics.lower() if c in "áéíóúñ¿¡")
    es = sum(1 for t in latin_words if t in {"el", "la", "los", "las", "que", "y", "de", "mi", "tu", "en", "por", "con", "sin", "es", "eres", "soy"})
    en = sum(1 for t in latin_words if t in {"the", "and", "you", "i", "to", "my", "of", "in", "is", "me", "we", "it", "on", "your"})
    if es + accents > en:
        return "es", False
    if en:
        return "en", False
    hint = (hint or "").strip().lower()
    return (hint if hint in _LANGUAGE_NAMES else ""), False


def _pronoun_counts(tokens: list[str]) -> dict[str, int]:
    counts = {"i": 0, "you": 0, "we": 0, "they": 0}
    for tok in tokens:
        for table in _PRONOUNS.values():
            for person, words in table.items():
                if tok in words:
                    counts[person] += 1
                    break
            else:
                continue
            break
    return counts


def _perspective(counts: dict[str, int], choose: _Chooser) -> str:
    i, you, we, they = counts["i"], counts["you"], counts["we"], counts["they"]
    if we > max(i, you) and we >= 2:
        return "sung from a collective 'we' perspective"
    if i and you:
        return choose.pick("persp", ("told in the first person and addressed to a 'you'", "a first-person voice speaking directly to a 'you'"))
    if i:
        return "told in an introspective first-person voice"
    if you:
        return "addressed directly to a 'you'"
    if they:
        return "narrated in the third person"
    return "in an impersonal, descriptive voice"


_IMAGERY_LATIN = {_strip_accents(w): g for lang in ("es", "en") for w, g in IMAGERY[lang].items()}


def _imagery(tokens: list[str]) -> list[str]:
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        gloss = None
        if _is_hangul(tok):
            gloss = next((g for w, g in IMAGERY["ko"].items() if _matches(tok, w)), None)
        else:
            gloss = next((_IMAGERY_LATIN[f] for f in sorted(_forms(tok)) if f in _IMAGERY_LATIN), None)
        if gloss:
            counts[gloss] += 1
            first.setdefault(gloss, i)
    return sorted(counts, key=lambda g: (-counts[g], first[g], g))


def _mood(tokens: list[str], themes: list[str]) -> str:
    pos = sum(1 for t in tokens if _MOOD_LEX["positive"].hit(t))
    neg = sum(1 for t in tokens if _MOOD_LEX["negative"].hit(t))
    theme_moods = [THEMES[t]["mood"] for t in themes[:2]]
    if pos > 1.5 * neg and pos >= 2:
        balance = "hopeful"
    elif neg > 1.5 * pos and neg >= 2:
        balance = "sorrowful"
    elif pos and neg:
        balance = "bittersweet"
    else:
        balance = "reflective"
    words: list[str] = []
    for w in theme_moods + [balance]:
        if w not in words:
            words.append(w)
    return _join(words[:3])


def _hook(lines: list[str], lang: str) -> tuple[int, int, str | None]:
    """(times the most repeated line occurs, number of distinct repeated lines, its key word)."""
    norm = [re.sub(r"\s+", " ", line.strip().lower()) for line in lines if line.strip()]
    counts = Counter(norm)
    repeated = [line for line in counts if counts[line] >= 2]
    if not repeated:
        return 1, 0, None
    top = max(counts[line] for line in repeated)
    words: Counter[str] = Counter()
    order: dict[str, int] = {}
    pronouns = set().union(*(w for table in _PRONOUNS.values() for w in table.values()))
    for line in norm:
        if counts[line] < 2:
            continue
        for tok in _tokens(line):
            if tok in _STOPWORDS or tok in pronouns or (len(tok) < 3 and not _is_hangul(tok)):
                continue
            words[tok] += 1
            order.setdefault(tok, len(order))
    key = sorted(words, key=lambda w: (-words[w], order[w]))[0] if words else None
    return top, len(repeated), key


def limit_lyric_overlap(text: str, lyrics: str, max_words: int = MAX_LYRIC_RUN) -> str:
    """Drop sentences (then trailing words) until ``text`` shares at most ``max_words``
    consecutive words with ``lyrics``."""
    if longest_shared_run(text, lyrics) <= max_words:
        return text
    kept = [s for s in _sentences(text) if longest_shared_run(s, lyrics) <= max_words]
    out = " ".join(kept)
    while out and longest_shared_run(out, lyrics) > max_words:  # a run spanning two kept sentences
        kept = kept[:-1]
        out = " ".join(kept)
    return out


def write_lyrics_understanding(lyrics: str, track: Track | None, choose: _Chooser) -> str:
    lines = [line for line in lyrics.splitlines()]
    content = [line for line in lines if line.strip()]
    stanzas = len([b for b in re.split(r"\n\s*\n", lyrics.strip()) if b.strip()])
    tokens = _tokens(lyrics)
    lang, mixed = detect_language(lyrics, track.lang if track else "")
    themes = detect_themes(lyrics)
    theme_names = [THEMES[t]["name"] for t in themes]
    persp = _perspective(_pronoun_counts(tokens), choose)
    images = _imagery(tokens)[:4]
    top, n_repeated, key = _hook(content, lang)

    out: list[str] = []
    if theme_names:
        out.append(
            choose.pick(
                "lu1",
                (
                    f"The lyrics revolve around {_join(theme_names)}, {persp}.",
                    f"At their core the lyrics are about {_join(theme_names)}, {persp}.",
                    f"Thematically the song explores {_join(theme_names)}, {persp}.",
                ),
            )
        )
    else:
        out.append(f"The lyrics do not settle on one clear theme; they are {persp}.")
    mood = _mood(tokens, themes)
    out.append(choose.pick("lu2", (f"The emotional tone is {mood}.", f"Their mood reads as {mood}.", f"The feeling is {mood}.")))
    if images:
        out.append(choose.pick("lu3", (f"Recurring imagery includes {_join(images)}.", f"The words paint pictures of {_join(images)}.")))
    if n_repeated:
        times = {2: "twice"}.get(top, f"{_NUMBER_WORDS.get(top, str(top))} times")
        hook = f"a hook line that recurs {times}"
        if key:
            hook += f", built around the word '{key}',"
        out.append(f"Structurally, {hook} anchors a repeated chorus across {_count(len(content), 'line')} in {_count(stanzas, 'stanza')}.")
    else:
        out.append(f"There is no repeated chorus: {_count(len(content), 'line')} in {_count(stanzas, 'stanza')} unfold like a continuous monologue.")
    if lang == "ko" and mixed:
        out.append("The lyrics are mostly in Korean, with English phrases woven into the hooks.")
    elif lang:
        out.append(f"The lyrics are in {_LANGUAGE_NAMES.get(lang, lang)}.")
    return limit_lyric_overlap(" ".join(out), lyrics)


# =========================================================================== unified caption


def write_unified_caption(
    features: MusicFeatures,
    track: Track | None,
    music_caption: str | None,
    lyrics_understanding: str | None,
    choose: _Chooser,
) -> str:
    m = MusicFacts(features, track, choose)
    genre = m.genre()
    subject = f"{genre} {m.kind()}" if genre else m.kind()
    bars = len(features.downbeats)
    dur = float(features.duration)
    bar_part = f"{m.downbeats()} marking {bars} bars" if bars >= 2 else m.downbeats()
    bar_part2 = f"{m.downbeats()} across {bars} bars" if bars >= 2 else m.downbeats()
    harmony = (
        f"Its harmony is hard to pin down, {m.key_phrase()}, with no clearly tracked chords."
        if not m.sequence
        else choose.pick(
            "u2",
            (
                f"Its harmony sits {m.key_phrase()}, with {m.progression_phrase()} {m.harmonic_rhythm()}.",
                f"{_cap(m.progression_phrase())}, {m.harmonic_rhythm()}, keeps the music {m.key_phrase()}.",
            ),
        )
    )
    parts = [
        choose.pick(
            "u1",
            (
                f"This {subject} moves at {m.tempo_phrase()} in {m.meter()}, with {bar_part} over the {dur:.0f}-second clip.",
                f"Pulsing at {m.tempo_phrase()} in {m.meter()}, this {subject} has {bar_part2} of the {dur:.0f}-second excerpt.",
            ),
        ),
        harmony,
    ]
    numbers = m.numbers()
    mood = f"{m.valence_word()}, with {m.energy_np()} and {m.dance()}"
    if numbers:
        parts.append(f"With {numbers}, it comes across as {mood}.")
    else:
        parts.append(f"It comes across as {mood}.")
    if music_caption:  # borrow what the music caption says beyond tempo, harmony and mood
        key_text = (features.key or "").strip().lower()
        skip = ("bpm", "tempo", "downbeat", "harmon", "chord", "progression", "mood", "comes across", "feels", "groove", "danceab")
        extra = [
            s for s in _sentences(music_caption)
            if not any(w in s.lower() for w in skip) and (not key_text or key_text not in s.lower())
        ][:2]  # fmt: skip
        if extra:
            joined = " ".join(extra)
            own_lead = ("its sound", "sonically", "texturally", "the timbre", "the mix", "in sound", "its timbre")
            if joined.lower().startswith(own_lead):
                parts.append(joined)
            else:
                parts.append(choose.pick("u4", ("In sound, ", "Texturally, ", "Sonically, ")) + _lower_first(joined))
    lu = (lyrics_understanding or "").strip()
    if lu:
        lu_text = " ".join(_sentences(lu)[:2])
        starts = ("the lyrics", "lyrically", "thematically", "at their core", "the song's lyrics", "its lyrics")
        parts.append(lu_text if lu_text.lower().startswith(starts) else "Lyrically, " + _lower_first(lu_text))
    elif track is not None and track.instrumental:
        parts.append("As an instrumental, it leaves the storytelling entirely to the music.")
    elif lyrics_understanding == "":
        parts.append("With no lyrics to draw on, the music alone carries the story.")
    return _clean_line(" ".join(_end(p) for p in parts))


# =========================================================================== MV description

_MV_TYPE_PHRASES = {
    "Live Performance": ("a live performance video", "built around the performers on stage and the energy of the crowd"),
    "Lyric Video": ("a lyric video", "where the words themselves become the main visual element"),
    "Animation": ("an animated music video", "with drawn or rendered characters carrying the action"),
    "Story Narrative": ("a story-driven narrative video", "following characters through a small plot"),
    "Artistic/Abstract": ("an abstract, art-house music video", "built from shapes, textures and visual metaphors"),
    "Dance Performance": ("a dance performance video", "with choreography locked to the beat"),
    "Behind-the-Scenes": ("a behind-the-scenes style video", "showing the musicians at work in an unpolished, documentary way"),
    "Nature/Scenic": ("a scenic nature video", "letting landscapes and natural light set the mood"),
    "Static/Dynamic Picture Montage": ("a picture montage", "with still images animated by slow zooms and pans"),
    "Cinematic Drama": ("a cinematic drama", "with film-like framing and emotionally charged scenes"),
}

# (keywords searched in genres/tags, visual style, what the visuals match in the sound)
_GENRE_STYLES: list[tuple[tuple[str, ...], str, str]] = [
    (("metal",), "dark, high-contrast stage lighting, smoke and pyrotechnic flashes", "heaviness"),
    (("punk",), "raw, handheld footage with gritty grain and fast cuts", "raw urgency"),
    (("drum and bass", "dnb", "jungle"), "strobing, glitch-heavy visuals with rapid-fire editing", "relentless pace"),
    (("chiptune", "video game"), "pixel-art, retro video-game graphics", "8-bit energy"),
    (("k-pop", "kpop", "idol"), "crisp, high-gloss sets with tightly synchronised choreography", "polish"),
    (("synthpop", "new wave", "80s", "retro"), "retro, neon-tinted 80s aesthetics", "synth sheen"),
    (("house", "techno", "edm", "electronic", "dance"), "neon-lit club visuals with rhythmic editing", "pulse"),
    (("hip hop", "rap", "trap"), "street-level camerawork with bold, confident framing", "swagger"),
    (("jazz", "swing", "blues"), "vintage, playful visuals with a warm film look", "swing"),
    (("country", "bluegrass", "americana"), "rustic, golden-hour Americana imagery", "twang"),
    (("folk", "acoustic", "singer-songwriter"), "natural light and warm, film-grain textures", "intimacy"),
    (("ambient", "drone", "new age"), "slow, contemplative long takes", "atmosphere"),
    (("classical", "neoclassical", "piano", "orchestral"), "elegant, slow-moving camerawork with refined compositions", "grace"),
    (("soul", "r&b", "rnb", "funk"), "warm, intimate soft-focus imagery", "warmth"),
    (("latin", "reggaeton", "salsa"), "sun-drenched, warm-toned imagery with romantic flair", "sensuality"),
    (("indie", "lo-fi", "lofi"), "lo-fi, understated visuals with a handmade feel", "sincerity"),
    (("rock", "grunge", "alternative"), "gritty, handheld camerawork under hot stage lights", "drive"),
    (("ballad",), "moody, slow-paced cinematography", "emotion"),
    (("pop",), "glossy, colourful and polished imagery", "catchiness"),
]

COLOUR_WORDS = (
    "red crimson scarlet orange amber gold golden yellow green lime teal turquoise cyan blue navy purple violet magenta "
    "pink rose brown beige tan white cream gray grey silver black"
).split()
_COLOUR_CANON = {"grey": "gray", "golden": "gold", "scarlet": "red", "crimson": "red", "navy": "blue", "violet": "purple", "lime": "green"}

_TITLES = {
    "verse": ("Verse Build", "Setting the Scene", "First Verse", "Verse Groove", "Quiet Verse", "Second Verse"),
    "build": ("Pre-Chorus Rise", "Rising Tension", "Building Momentum", "Turning Point", "The Lift"),
    "chorus": ("Chorus Burst", "Chorus Peak", "Hook Moment", "High Point", "Full Chorus", "Final Chorus"),
    "chorus_soft": ("Chorus Swell", "Emotional Peak", "Soaring Refrain", "Full Chorus", "Gentle Peak", "Final Chorus"),
    "outro": ("Bridge Interlude", "Breakdown", "Winding Down", "Last Refrain", "Afterglow"),
    "closing": ("Closing Shot", "Final Frame", "Fade Out"),
}
_SECTION_GAIN = {"opening": 0.75, "verse": 0.85, "build": 0.95, "chorus": 1.15, "outro": 0.85, "closing": 0.7}
_SECTION_NAMES = {"opening": "intro", "verse": "verse", "build": "build", "chorus": "chorus", "outro": "bridge", "closing": "outro"}


def _genre_style(track: Track | None) -> tuple[str, str]:
    words = [w.lower() for w in ((track.genres if track else []) + (track.tags if track else []))]
    for keywords, style, quality in _GENRE_STYLES:
        if any(k in w for w in words for k in keywords):
            return style, quality
    return "stylised, music-driven visuals", "character"


def _palette(captions: list[FrameCaption], visual: VisualStats | None) -> list[str]:
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    pos = 0
    for fc in captions:
        for tok in _tokens(fc.caption):
            if tok in COLOUR_WORDS:
                name = _COLOUR_CANON.get(tok, tok)
                counts[name] += 1
                first.setdefault(name, pos)
                pos += 1
    if not counts and visual is not None:
        for fr in visual.frames:
            for c in fr.colours[:2]:
                name = _COLOUR_CANON.get(c.lower(), c.lower())
                counts[name] += 1
                first.setdefault(name, pos)
                pos += 1
    return sorted(counts, key=lambda c: (-counts[c], first[c], c))[:3]


def _section(i: int, n: int, t: float, duration: float) -> str:
    p = t / duration if duration > 0 else i / max(n - 1, 1)
    if i == 0:
        return "opening"
    if i == n - 1 and p >= 0.7:
        return "closing"
    if p < 0.3:
        return "verse"
    if p < 0.5:
        return "build"
    if p < 0.8:
        return "chorus"
    return "outro"


def _level(value: float) -> str:
    if value < 0.35:
        return "hushed"
    if value < 0.55:
        return "restrained"
    if value < 0.75:
        return "rising"
    return "at full force"


def _beat_position(t: float, features: MusicFeatures, beat_len: float | None) -> str:
    tol = 0.25 * beat_len if beat_len else 0.15
    if features.downbeats and min(abs(t - d) for d in features.downbeats) <= tol:
        return "right on a downbeat"
    if features.beats:
        nearest = min(features.beats, key=lambda b: abs(b.time - t))
        if abs(nearest.time - t) <= tol:
            return f"on beat {nearest.number} of the bar"
    return "between beats"


def _frame_stats(visual: VisualStats | None, t: float):
    if visual is None or not visual.frames:
        return None
    best = min(visual.frames, key=lambda f: abs(f.t - t))
    return best if abs(best.t - t) <= 1.0 else None


def write_mv_description(inp: StageInput, choose: _Chooser) -> MVDescription:
    features: MusicFeatures = inp.music_features  # type: ignore[assignment]
    track, visual = inp.track, inp.visual
    captions = list(inp.frame_captions or [])
    m = MusicFacts(features, track, choose)
    genre = m.main_genre()
    style, quality = _genre_style(track)
    themes = themes_from_summary(inp.lyrics_understanding or "")
    theme_names = [THEMES[t]["name"] for t in themes]
    instrumental = (track is not None and track.instrumental) or not (inp.lyrics_understanding or "").strip()

    # ---------------------------------------------------------------- overview
    mv_type = inp.mv_type
    type_phrase, type_detail = _MV_TYPE_PHRASES.get(mv_type or "", ("a music video", "shaped by the music's structure"))
    subject = f"this {genre} {m.kind()}" if genre else f"this {m.kind()}"
    sentences = [
        choose.pick(
            "o1",
            (
                f"The MV for {subject} is {type_phrase}, {type_detail}.",
                f"For {subject}, the MV takes the form of {type_phrase}, {type_detail}.",
            ),
        ),
        f"Its visual style leans on {style}, matching the {quality} of the music.",
    ]
    colours = _palette(captions, visual)
    if colours:
        light = ""
        if visual is not None and visual.frames:
            mean_b = statistics.mean(f.brightness for f in visual.frames)
            light = ", kept low-key and shadowy" if mean_b < 70 else (", bright and airy" if mean_b > 170 else ", evenly lit")
        sentences.append(
            choose.pick("o3", (f"A palette of {_join(colours)} runs through the frames{light}.", f"The colours stay within {_join(colours)} tones{light}."))
        )
    pace = f"{m.tempo_phrase()} pulse" if m.tempo > 0 else "its pulse"
    sentences.append(f"The tone is {m.tone()}, paced by {pace} and {m.energy_np()}.")
    if theme_names:
        sentences.append(f"Visual motifs echo the lyrics' themes of {_join(theme_names)}.")
    elif instrumental:
        sentences.append(f"With no lyrics, the imagery follows the music's {m.valence_word().replace(' and ', ', ')} arc.")
    overview = _clean_line(" ".join(sentences[:5]))

    # ---------------------------------------------------------------- beats
    duration = float(features.duration) or (visual.duration if visual else 0.0)
    energy = m.energy if m.energy is not None else 0.5
    chorus_pool = "chorus" if energy >= 0.4 else "chorus_soft"
    used: dict[str, int] = {}
    used_titles: set[str] = set()
    beats: list[MVBeat] = []
    n = len(captions)
    for i, fc in enumerate(captions):
        section = _section(i, n, fc.t, duration)
        pool = _TITLES[chorus_pool if section == "chorus" else section] if section != "opening" else ("Opening Scene",)
        k = used.get(section, 0)
        used[section] = k + 1
        base = pool[(choose.index(f"title-{section}", len(pool)) + k) % len(pool)] if section != "opening" else pool[0]
        title, extra = base, 2
        while title in used_titles:
            title = f"{base} {_ROMAN.get(extra, str(extra))}"
            extra += 1
        used_titles.add(title)

        caption = _end(_clean_line(fc.caption)) or "The frame holds on the scene."
        chord = m.chord_at(fc.t)
        chord_phrase = f"the {chord} chord"
        position = _beat_position(fc.t, features, m.beat_len)
        level = _level(min(1.0, energy * _SECTION_GAIN[section]))
        sec_name = _SECTION_NAMES[section]
        theme_clause = ""
        if theme_names and (section in ("build", "chorus", "closing", "opening") or i % 3 == 1):
            theme_clause = f", echoing the lyrics' theme of {theme_names[i % len(theme_names)]}"
        stats = _frame_stats(visual, fc.t)
        lead = ""
        if stats is not None and stats.cut_before and i > 0:
            lead = choose.pick(f"cut-{i}", ("A hard cut brings us here. ", "The edit snaps to this shot. "))
        music = choose.pick(
            f"beat-{i}",
            (
                f"The image lands {position} while {chord_phrase} rings out, and the {sec_name} energy is {level}{theme_clause}.",
                f"With {chord_phrase} underneath and the shot arriving {position}, the {sec_name} energy is {level}{theme_clause}.",
                f"{_cap(chord_phrase)} sounds as the frame arrives {position}; the {sec_name} energy is {level}{theme_clause}.",
            ),
        ) if chord else (
            f"The shot arrives {position} in a pause between chords, and the {sec_name} energy is {level}{theme_clause}."
        )
        beats.append(MVBeat(title=_clean_line(title).replace(":", " -"), text=_clean_line(f"{lead}{caption} {music}")))
    return MVDescription(overview=overview, beats=beats)


_ROMAN = {2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII", 8: "VIII", 9: "IX", 10: "X"}


# =========================================================================== backend


class OfflineBackend:
    """Deterministic heuristic backend (no network, no model): see the module docstring."""

    id = "offline"

    def __init__(self, variation_salt: str = "", max_lyric_run: int = MAX_LYRIC_RUN) -> None:
        self.variation_salt = str(variation_salt)
        self.max_lyric_run = int(max_lyric_run)

    # ---------------------------------------------------------------- protocol

    def model_for(self, stage: Stage) -> str:
        return VISION_MODEL if stage.name in ("frame_captions", "mv_type") else TEXT_MODEL

    def prompt_version(self, stage: Stage) -> str:
        return PROMPT_VERSION

    def params(self, stage: Stage) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": self.id,
            "stage": stage.name,
            "template_version": TEMPLATE_VERSION,
            "variation_salt": self.variation_salt,
        }
        if stage.name == "lyrics_understanding":
            out["max_lyric_run"] = self.max_lyric_run
        if stage.name in ("frame_captions", "mv_type"):
            out["visual_captioner_version"] = _visual_version()
        return out

    def run(self, stage: Stage, inputs: list[StageInput]) -> list[StageResult]:
        handler = self._handlers().get(stage.name)
        if handler is None:
            raise ValueError(f"offline backend has no handler for stage {stage.name!r}")
        results = []
        model = self.model_for(stage)
        for raw in inputs:
            clip_id = getattr(raw, "clip_id", "") or ""
            try:
                inp = stage.restrict(raw)  # read only what the stage may read
                output = handler(inp, _Chooser(inp.clip_id, self.variation_salt))
                output = stage.output_model.model_validate(output.model_dump())
                error = None
            except Exception as exc:  # one bad clip never stops the stage
                output, error = None, f"{type(exc).__name__}: {exc}"
            results.append(
                StageResult(
                    clip_id=clip_id,
                    output=output,
                    error=error,
                    model=model,
                    usage=Usage(requests=0, input_tokens=0, output_tokens=0, cost_usd=0.0),
                    notes={"backend": self.id, "label": LABEL, "prompt_version": PROMPT_VERSION},
                )
            )
        return results

    # ---------------------------------------------------------------- stages

    def _handlers(self) -> dict[str, Callable[[StageInput, _Chooser], Any]]:
        return {
            "music_caption": self._music_caption,
            "lyrics_understanding": self._lyrics_understanding,
            "frame_captions": self._frame_captions,
            "mv_type": self._mv_type,
            "unified_music_caption": self._unified,
            "mv_description": self._mv_description,
        }

    @staticmethod
    def _need(inp: StageInput, *fields: str) -> None:
        missing = [f for f in fields if getattr(inp, f) is None]
        if missing:
            raise ValueError(f"missing input: {', '.join(missing)}")

    def _music_caption(self, inp: StageInput, choose: _Chooser) -> MusicCaption:
        self._need(inp, "music_features")
        return MusicCaption(caption=write_music_caption(inp.music_features, inp.track, choose))  # type: ignore[arg-type]

    def _lyrics_understanding(self, inp: StageInput, choose: _Chooser) -> LyricsUnderstanding:
        lyrics = inp.lyrics or ""
        if not lyrics.strip() or (inp.track is not None and inp.track.instrumental):
            return LyricsUnderstanding(text="")
        text = write_lyrics_understanding(lyrics, inp.track, choose)
        return LyricsUnderstanding(text=limit_lyric_overlap(text, lyrics, self.max_lyric_run))

    def _frame_captions(self, inp: StageInput, choose: _Chooser) -> FrameCaptions:
        self._need(inp, "visual")
        from builders.llm.offline_visual import caption_frames

        out = caption_frames(inp.visual)
        return out if isinstance(out, FrameCaptions) else FrameCaptions(captions=list(out))

    def _mv_type(self, inp: StageInput, choose: _Chooser) -> MVTypeTag:
        self._need(inp, "visual")
        from builders.llm.offline_visual import classify_mv_type

        out = classify_mv_type(inp.visual, captions=inp.frame_captions, track=inp.track)
        return out if isinstance(out, MVTypeTag) else MVTypeTag(mv_type=out)

    def _unified(self, inp: StageInput, choose: _Chooser) -> UnifiedMusicCaption:
        self._need(inp, "music_features")
        caption = write_unified_caption(inp.music_features, inp.track, inp.music_caption, inp.lyrics_understanding, choose)  # type: ignore[arg-type]
        return UnifiedMusicCaption(caption=caption)

    def _mv_description(self, inp: StageInput, choose: _Chooser) -> MVDescription:
        self._need(inp, "music_features", "frame_captions")
        if not inp.frame_captions:
            raise ValueError("no frame captions to describe")
        desc = write_mv_description(inp, choose)
        if MVDescription.parse(desc.render()) != desc:  # the training target must round-trip
            raise ValueError("rendered MV description does not parse back to itself")
        return desc


def _visual_version() -> str:
    try:
        from builders.llm import offline_visual
    except Exception:  # not importable yet: still hashable, and changes once it is
        return "unavailable"
    return str(getattr(offline_visual, "VERSION", getattr(offline_visual, "__version__", "1")))
