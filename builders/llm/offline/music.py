"""What the offline captions say about the music, computed once per clip from measurements.

The chord and key theory itself lives in ``builders.music_theory`` (shared with the OpenAI
prompts); this module turns it, the madmom/librosa features and the Music4All metadata
into English phrases. The offline captions write "N" where no chord sounds.
"""

from __future__ import annotations

import statistics
from typing import Sequence

from builders.llm.offline.lexicon import LANGUAGE_NAMES
from builders.llm.offline.text import NUMBER_WORDS, Chooser, join_list, quote_tag, to_float, with_article
from builders.music_theory import chord_name, chord_text, parse_key, roman_numeral, sounding_chord
from mv4all.schema import MusicFeatures, Track


def pretty_chord(label: str) -> str:
    """madmom "A:min" -> "Am", "C:maj" -> "C", "N" -> "N" (madmom's own spelling, kept in captions)."""
    return chord_text(label, no_chord="N")


class MusicFacts:
    """Everything the captions say about the music, computed once per clip from measurements."""

    def __init__(self, features: MusicFeatures, track: Track | None, choose: Chooser) -> None:
        self.f = features
        self.track = track
        self.choose = choose
        self.tempo = float(features.tempo)
        self.bpb = max(int(features.beats_per_bar or 0), 0)
        self.beat_len = 60.0 / self.tempo if self.tempo > 0 else None
        self.bar_len = self.beat_len * self.bpb if self.beat_len and self.bpb else None
        self.energy = (to_float(features.energy) if features.energy is not None
                       else to_float(track.energy if track else None))
        self.valence = (to_float(features.valence) if features.valence is not None
                        else to_float(track.valence if track else None))
        self.danceability = (
            to_float(features.danceability) if features.danceability is not None
            else to_float(track.danceability if track else None)
        )
        self.key = parse_key(features.key)
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
        return with_article(f"{self.tempo_word()} {round(self.tempo)} BPM")

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
            name = chord_name(c.label)
            if name is None:  # no chord sounds here
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
        raw_by_name: dict[str, str] = {}  # name -> its first madmom label, for the roman numerals
        for c in self.f.chords:
            name = chord_name(c.label)
            if name is not None:
                raw_by_name.setdefault(name, c.label)
        self._raw = raw_by_name
        self.loop: list[str] | None = None
        seq = self.sequence
        for p in range(1, min(8, len(seq) // 2) + 1):
            if all(seq[i] == seq[i % p] for i in range(len(seq))):
                self.loop = seq[:p]
                break

    def roman_of(self, names: Sequence[str]) -> str | None:
        numerals = [roman_numeral(self._raw.get(n, n), self.key) for n in names]
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
            count = NUMBER_WORDS.get(len(self.loop), str(len(self.loop)))
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
        return f"chords moving through {join_list(shown)}{more}"

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
        """The chord sounding at ``t`` (the last one rings on past its end); None for no chord."""
        chord = sounding_chord(self.f.chords, t, hold_last=True)
        return chord_name(chord.label) if chord is not None else None

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
        return f", in keeping with listener tags such as {join_list([quote_tag(t) for t in tags])}"

    def tone(self) -> str:
        e = self.energy if self.energy is not None else 0.5
        v = self.valence if self.valence is not None else 0.5
        if e >= 0.6:
            return ("euphoric and celebratory" if v >= 0.6
                    else ("aggressive and tense" if v < 0.4 else "driving and urgent"))
        if e < 0.4:
            return ("warm and serene" if v >= 0.6
                    else ("melancholic and introspective" if v < 0.4 else "calm and reflective"))
        return "upbeat and playful" if v >= 0.6 else ("brooding and moody" if v < 0.4 else "bittersweet and grounded")

    def numbers(self) -> str:
        parts = []
        for name, value in (("energy", self.energy), ("valence", self.valence), ("danceability", self.danceability)):
            if value is not None:
                parts.append(f"{name} at {value:.2f}")
        return join_list(parts)

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
        name = LANGUAGE_NAMES.get(self.track.lang.strip().lower())
        return f", sung in {name}" if name else ""
