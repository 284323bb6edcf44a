"""Synthesised, musical audio for the embedded sample corpus, with its ground truth.

The sample corpus must exercise the real feature extractor (madmom + librosa) and let
tests score it with mir_eval, so each clip is built to be *unambiguous* music rather
than noise: diatonic cadential progressions that start and end on the tonic (minor keys
use the raised leading tone on V), bass on the downbeat, harmony changing at bar lines,
drum patterns that spell out 3/4 or 4/4, and a melody made of chord and scale tones.
Everything is seeded by ``ClipSpec.seed`` and vectorised, so a 30 s clip renders in a
fraction of a second and is bit-identical on every run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from builders.sample.specs import TONICS, ClipSpec
from mv4all.schema import CLIP_SECONDS

__all__ = ["synthesize", "write_mp3", "chord_label", "STYLES"]

_PC = {name: i for i, name in enumerate(TONICS)}
_SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
# Keys written with flats (so chord roots are spelled the way the key is).
_FLAT_MAJOR = {"F", "Bb", "Eb", "Ab"}
_FLAT_MINOR = {"D", "G", "C", "F", "Bb", "Eb"}

_MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR_SCALE = np.array([0, 2, 3, 5, 7, 8, 10])  # natural; V uses the raised 7th

# Chords as (semitones above the tonic, quality). Every progression opens on the tonic
# and closes with a V-I cadence, gives the tonic the most bars and never lets V follow
# V. In minor, V is major (the raised leading tone) and the tonic returns often: with
# less tonic or without V, madmom's key CNN drifts to the parallel or relative major.
_MAJOR_PROGS = (
    ((0, "maj"), (5, "maj"), (7, "maj"), (0, "maj"), (9, "min"), (5, "maj"), (7, "maj"), (0, "maj")),
    ((0, "maj"), (9, "min"), (5, "maj"), (7, "maj"), (0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")),
    ((0, "maj"), (5, "maj"), (0, "maj"), (7, "maj"), (9, "min"), (5, "maj"), (7, "maj"), (0, "maj")),
)
_MINOR_PROGS = (
    ((0, "min"), (5, "min"), (0, "min"), (7, "maj"), (8, "maj"), (5, "min"), (7, "maj"), (0, "min")),
    ((0, "min"), (7, "maj"), (0, "min"), (5, "min"), (0, "min"), (8, "maj"), (7, "maj"), (0, "min")),
    ((0, "min"), (5, "min"), (0, "min"), (7, "maj"), (0, "min"), (8, "maj"), (7, "maj"), (0, "min")),
)


@dataclass(frozen=True)
class Style:
    """A cheap timbre/arrangement preset chosen from the clip's genres."""

    name: str
    pad: tuple[float, ...]  # harmonic amplitudes of the sustained chord instrument
    lead: tuple[float, ...]  # harmonic amplitudes of the melody instrument
    bass: tuple[float, ...]
    pad_attack: float = 0.03  # seconds
    pad_decay: float = 3.0  # exponential time constant (s); large = organ-like sustain
    lead_decay: float = 0.6
    drive: float = 0.0  # tanh distortion on the chord instrument (rock)
    four_on_floor: bool = False
    swing: float = 0.0  # delay of off-beat eighths as a fraction of a beat (hi-hats only)
    drums: float = 1.0  # drum level
    stabs: bool = False  # re-strike the chord on every beat (guitar strum / piano comping)


def _saw(n: int, decay: float = 1.0) -> tuple[float, ...]:
    return tuple((1.0 / k) ** decay for k in range(1, n + 1))


def _pulse(n: int, duty: float = 0.25) -> tuple[float, ...]:
    # A 25% pulse (the NES sound) rather than a square: a square's strong odd harmonics
    # (3rd = a twelfth up) pull chroma and key estimates towards the dominant.
    return tuple(abs(np.sin(np.pi * k * duty)) / k for k in range(1, n + 1))


STYLES: dict[str, Style] = {
    "pop": Style("pop", pad=_saw(8, 1.3), lead=(1.0, 0.5, 0.3, 0.15, 0.08), bass=(1.0, 0.6, 0.3, 0.15)),
    "rock": Style(
        "rock", pad=_saw(8, 1.2), lead=_saw(8, 1.1), bass=(1.0, 0.7, 0.4, 0.25, 0.1), drive=1.2, stabs=True,
        pad_decay=1.2,
    ),
    "electronic": Style(
        "electronic", pad=_saw(12, 1.0), lead=_pulse(9), bass=_saw(6, 1.0), four_on_floor=True, pad_attack=0.05
    ),
    "chiptune": Style(
        "chiptune", pad=_pulse(9), lead=_pulse(10), bass=_pulse(6, 0.5), pad_attack=0.005, pad_decay=0.8, stabs=True
    ),
    "jazz": Style(
        "jazz", pad=(1.0, 0.4, 0.05, 0.12), lead=(1.0, 0.25, 0.12, 0.05), bass=(1.0, 0.35, 0.1), swing=0.17, drums=0.7,
        pad_decay=0.9, stabs=True,
    ),
    "folk": Style(
        "folk", pad=_saw(9, 1.5), lead=(1.0, 0.6, 0.35, 0.2, 0.1), bass=(1.0, 0.5, 0.2), pad_attack=0.004,
        pad_decay=0.7, stabs=True, drums=0.8,
    ),
    "soft": Style(
        "soft", pad=(1.0, 0.35, 0.15, 0.07), lead=(1.0, 0.45, 0.2, 0.1, 0.05), bass=(1.0, 0.4, 0.15), pad_attack=0.01,
        pad_decay=1.5, drums=0.6, stabs=True,
    ),
    "hiphop": Style(
        "hiphop", pad=(1.0, 0.45, 0.2, 0.1), lead=(1.0, 0.3, 0.1), bass=(1.0, 0.5, 0.2), swing=0.12, drums=1.2
    ),
}

_GENRE_STYLE = (
    (("chiptune",), "chiptune"),
    (("metal", "punk", "rock"), "rock"),
    (("house", "electronic", "synthpop", "new wave", "drum and bass", "dance", "k-pop", "edm", "techno"), "electronic"),
    (("jazz", "swing", "soul", "r&b", "blues"), "jazz"),
    (("folk", "acoustic", "country", "bluegrass", "ballad"), "folk"),
    (("classical", "ambient", "neoclassical", "piano"), "soft"),
    (("hip hop", "rap", "trap"), "hiphop"),
)


def style_for(genres) -> Style:
    """The preset for a list of genres (first match wins, pop otherwise)."""
    lowered = [g.lower() for g in genres]
    for needles, name in _GENRE_STYLE:
        if any(n in g for g in lowered for n in needles):
            return STYLES[name]
    return STYLES["pop"]


def chord_label(root_pc: int, quality: str, flats: bool = False) -> str:
    """madmom/mir_eval style label, e.g. ``A:min``."""
    names = _FLAT_NAMES if flats else _SHARP_NAMES
    return f"{names[root_pc % 12]}:{quality}"


def _uses_flats(tonic: str, mode: str) -> bool:
    if "b" in tonic[1:]:
        return True
    if "#" in tonic:
        return False
    return tonic in (_FLAT_MAJOR if mode == "major" else _FLAT_MINOR)


# --------------------------------------------------------------------------- rendering helpers


class _Mixer:
    """Adds note events into one buffer; wavetables make every tone one gather per sample."""

    TABLE = 4096

    def __init__(self, n: int, sr: int):
        self.n, self.sr = n, sr
        self.out = np.zeros(n, dtype=np.float64)
        self._tables: dict[tuple[float, ...], np.ndarray] = {}

    def table(self, harmonics: tuple[float, ...]) -> np.ndarray:
        tab = self._tables.get(harmonics)
        if tab is None:
            phase = 2 * np.pi * np.arange(self.TABLE) / self.TABLE
            tab = sum(a * np.sin(k * phase) for k, a in enumerate(harmonics, start=1) if a)
            tab = tab / np.max(np.abs(tab))
            self._tables[harmonics] = tab
        return tab

    def add(self, start_s: float, signal: np.ndarray) -> None:
        i = int(round(start_s * self.sr))
        if i >= self.n or i + len(signal) <= 0:
            return
        if i < 0:
            signal, i = signal[-i:], 0
        m = min(len(signal), self.n - i)
        self.out[i : i + m] += signal[:m]

    def tone(
        self,
        start_s: float,
        dur_s: float,
        midi: float,
        harmonics: tuple[float, ...],
        gain: float,
        attack: float = 0.005,
        decay: float = 1.0,
        release: float = 0.05,
        drive: float = 0.0,
    ) -> None:
        n = int((dur_s + release) * self.sr)
        if n <= 0:
            return
        t = np.arange(n) / self.sr
        freq = 440.0 * 2 ** ((midi - 69) / 12)
        idx = (np.floor(t * (freq * self.TABLE)).astype(np.int64)) % self.TABLE
        wave = self.table(harmonics)[idx]
        env = np.exp(-t / decay)
        if attack > 0:
            env *= np.minimum(1.0, t / attack)
        rel = np.clip((dur_s + release - t) / release, 0.0, 1.0)
        wave = wave * env * rel
        if drive:
            wave = np.tanh(drive * wave) / np.tanh(drive)
        self.add(start_s, gain * wave)


def _drum_kit(sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One sample per drum, rendered once per clip (seeded noise)."""
    from scipy.signal import butter, sosfilt

    def t_of(sec):
        return np.arange(int(sec * sr)) / sr

    t = t_of(0.45)
    f = 45 + 90 * np.exp(-t / 0.03)  # pitch drop of a kick
    kick = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.16)
    kick[: int(0.004 * sr)] += rng.uniform(-0.6, 0.6, int(0.004 * sr))  # beater click

    t = t_of(0.25)
    noise = rng.standard_normal(len(t))
    band = sosfilt(butter(2, [1200, 7000], btype="bandpass", fs=sr, output="sos"), noise)
    snare = 0.9 * band * np.exp(-t / 0.06) + 0.6 * np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.05)

    hp = butter(4, 7000, btype="highpass", fs=sr, output="sos")
    t = t_of(0.08)
    hat = sosfilt(hp, rng.standard_normal(len(t))) * np.exp(-t / 0.018)
    t = t_of(0.35)
    open_hat = sosfilt(hp, rng.standard_normal(len(t))) * np.exp(-t / 0.09)
    t = t_of(1.6)
    crash = sosfilt(butter(2, 4000, btype="highpass", fs=sr, output="sos"),
                    rng.standard_normal(len(t))) * np.exp(-t / 0.5)
    kit = {"kick": kick, "snare": snare, "hat": hat, "open_hat": open_hat, "crash": crash}
    return {k: v / np.max(np.abs(v)) for k, v in kit.items()}


def _arrange(prog: tuple, n_bars: int) -> list:
    """Repeat ``prog`` over ``n_bars``; a cut-short last cycle still cadences V-I.

    Whole cycles already open on the tonic and close V-I. A partial cycle of r bars keeps
    its first r-2 bars and ends V-I (r >= 3), or is just the tonic (r = 1) or V-I (r = 2),
    so the clip never ends on a dangling chord or repeats V.
    """
    full, rest = divmod(n_bars, len(prog))
    chords = list(prog) * full
    tonic, dominant = prog[0], (7, "maj")
    if rest == 1:
        chords.append(tonic)
    elif rest >= 2:
        lead_in = list(prog[: rest - 2])
        if lead_in and lead_in[-1] == dominant:  # no V-V-I: approach V from IV/iv
            lead_in[-1] = next(c for c in prog if c[0] == 5)
        chords.extend(lead_in + [dominant, tonic])
    return chords


def _near(pc: int, center: int) -> int:
    """The MIDI note of pitch class ``pc`` closest to ``center``."""
    return center + ((pc - center + 6) % 12) - 6


# --------------------------------------------------------------------------- parts of a bar


def _drums(mix: _Mixer, kit: dict, style: Style, t_bar: float, beat: float, bpb: int, crash: bool) -> None:
    """The meter is spelled by where kick and snare fall; the downbeat gets the accents."""
    d = style.drums
    if crash:  # every 4 bars: phrase starts are audible
        mix.add(t_bar, 0.45 * d * kit["crash"])
    for k in range(bpb):
        tb = t_bar + k * beat
        if bpb == 4:  # rock/pop backbeat (kick 1 and 3, snare 2 and 4), or four on the floor
            if k in (0, 2) or style.four_on_floor:
                mix.add(tb, (1.0 if k == 0 else 0.8) * d * kit["kick"])
            if k in (1, 3):
                mix.add(tb, 0.75 * d * kit["snare"])
        elif k == 0:  # waltz: strong kick on 1, light snare on 2 and 3
            mix.add(tb, d * kit["kick"])
        else:
            mix.add(tb, 0.4 * d * kit["snare"])
        mix.add(tb, (0.35 if k == 0 else 0.25) * d * kit["hat"])
        off = tb + beat * (0.5 + style.swing)
        mix.add(off, 0.18 * d * (kit["open_hat"] if style.four_on_floor else kit["hat"]))


def _bass(mix: _Mixer, style: Style, t_bar: float, beat: float, bpb: int, root: int) -> None:
    """Root on the downbeat (and again on beat 3 in 4/4).

    Root, not the fifth, on beat 3: a fifth in the bass pulls the key estimate towards V.
    """
    note = _near(root, 38)
    if bpb == 4:
        mix.tone(t_bar, 1.9 * beat, note, style.bass, 0.9, decay=1.2)
        mix.tone(t_bar + 2 * beat, 1.4 * beat, note, style.bass, 0.7, decay=1.0)
    else:
        mix.tone(t_bar, 2.5 * beat, note, style.bass, 0.95, decay=1.2)


def _chords(mix: _Mixer, style: Style, t_bar: float, beat: float, bpb: int, triad: tuple[int, int, int]) -> None:
    """Close triad near middle C plus the third an octave up, held or re-struck per beat.

    Bass, harmonics and the fifth already make root and fifth loud; the third is what
    tells major from minor, so it is doubled.
    """
    voicing = sorted(_near(pc, 62) for pc in triad)
    voicing.append(_near(triad[1], 62) + 12)
    if style.stabs:
        for k in range(bpb):
            gain = 0.34 if k == 0 else 0.22
            for m in voicing:
                mix.tone(t_bar + k * beat, 0.9 * beat, m, style.pad, gain, attack=style.pad_attack,
                         decay=style.pad_decay, drive=style.drive)
    else:
        for m in voicing:
            mix.tone(t_bar, bpb * beat - 0.02, m, style.pad, 0.3, attack=style.pad_attack, decay=style.pad_decay,
                     drive=style.drive, release=0.08)


class _Melody:
    """A stepwise tune: chord tones on beats, scale tones between, tonic at phrase ends."""

    LOW, HIGH = 67, 84  # G4..C6

    def __init__(self, tonic: int, minor: bool, rng: np.random.Generator):
        self.tonic, self.minor, self.rng = tonic, minor, rng
        self.prev = _near(tonic, 74)
        # Lean on the tonic and the key's third: the third is the mode's colour.
        self.weight = {tonic: 1.6, (tonic + (3 if minor else 4)) % 12: 2.0}

    def bar(self, mix: _Mixer, style: Style, t_bar: float, beat: float, bpb: int, triad: tuple[int, int, int],
            over_dominant: bool, phrase_end: bool, last: bool) -> None:
        scale = _MINOR_SCALE if self.minor else _MAJOR_SCALE
        if self.minor and over_dominant:
            scale = np.array([0, 2, 3, 5, 7, 8, 11])  # harmonic minor: raised leading tone over V
        scale_pcs = [(self.tonic + s) % 12 for s in scale]
        rng = self.rng
        k = 0.0
        while k < bpb - 1e-9:
            on_beat = abs(k - round(k)) < 1e-9
            quarter = (on_beat and rng.random() < 0.6) or (bpb == 3 and rng.random() < 0.5)
            step = min(1.0 if quarter else 0.5, bpb - k)
            if last or (phrase_end and k == 0):
                pcs, step = [self.tonic], bpb - k  # phrase endings land (and rest) on the tonic
            elif on_beat:
                pcs = list(triad)
            else:
                pcs = scale_pcs
            cands = np.array([_near(pc, self.prev) for pc in pcs])
            keep = (cands >= self.LOW) & (cands <= self.HIGH)
            cands = cands[keep] if np.any(keep) else cands
            weights = np.exp(-np.abs(cands - self.prev) / 3.0) * np.array(
                [self.weight.get(int(c) % 12, 1.0) for c in cands]
            )
            note = int(cands[rng.choice(len(cands), p=weights / weights.sum())])
            note += 12 if note < self.LOW else -12 if note > self.HIGH else 0
            mix.tone(t_bar + k * beat, step * beat * 0.92, note, style.lead, 0.33 if k == 0 else 0.26, attack=0.008,
                     decay=style.lead_decay)
            self.prev = note
            k += step


# --------------------------------------------------------------------------- public


def synthesize(spec: ClipSpec, duration: float = CLIP_SECONDS, sr: int = 44100) -> tuple[np.ndarray, dict]:
    """Render ``spec`` as mono float32 audio plus its ground truth.

    Truth: ``tempo``, ``beats_per_bar``, ``key`` ("A minor", spelled like the spec's
    tonic), ``beats``/``downbeats`` (seconds) and ``chords`` (bar-long segments with
    madmom-style labels). Only the seed, not global state, decides the randomness.
    """
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    if spec.tonic not in _PC:
        raise ValueError(f"unknown tonic {spec.tonic!r}; expected one of {TONICS}")
    if spec.mode not in ("major", "minor"):
        raise ValueError(f"unknown mode {spec.mode!r}")
    if not spec.tempo > 0 or int(spec.beats_per_bar) < 1:
        raise ValueError(f"tempo and beats_per_bar must be positive, got {spec.tempo}, {spec.beats_per_bar}")
    rng = np.random.default_rng(spec.seed)
    style = style_for(spec.genres)
    n = int(round(duration * sr))
    mix = {name: _Mixer(n, sr) for name in ("drums", "bass", "pad", "lead")}
    kit = _drum_kit(sr, rng)

    tonic = _PC[spec.tonic]
    minor = spec.mode == "minor"
    flats = _uses_flats(spec.tonic, spec.mode)
    bpb = int(spec.beats_per_bar)
    beat = 60.0 / float(spec.tempo)
    bar = beat * bpb
    n_bars = int(np.ceil(duration / bar))

    prog = (_MINOR_PROGS if minor else _MAJOR_PROGS)[int(rng.integers(3))]
    chords = _arrange(prog, n_bars)

    truth_chords: list[dict] = []
    beats: list[float] = []
    downbeats: list[float] = []
    melody = _Melody(tonic, minor, rng)

    for b, (deg, quality) in enumerate(chords):
        t_bar = b * bar
        root = (tonic + deg) % 12
        triad = (root, (root + (3 if quality == "min" else 4)) % 12, (root + 7) % 12)
        truth_chords.append(
            {"start": round(t_bar, 6), "end": round(min(t_bar + bar, duration), 6),
             "label": chord_label(root, quality, flats)}
        )
        for k in range(bpb):
            if t_bar + k * beat < duration - 1e-9:
                beats.append(round(t_bar + k * beat, 6))
                if k == 0:
                    downbeats.append(round(t_bar, 6))

        _drums(mix["drums"], kit, style, t_bar, beat, bpb, crash=b % 4 == 0)
        _bass(mix["bass"], style, t_bar, beat, bpb, root)
        _chords(mix["pad"], style, t_bar, beat, bpb, triad)
        phrase_end = b == n_bars - 1 or (deg == 0 and b % 4 == 3)  # I/i closing a 4-bar phrase
        melody.bar(mix["lead"], style, t_bar, beat, bpb, triad, over_dominant=deg == 7, phrase_end=phrase_end,
                   last=b == n_bars - 1)

    levels = {"drums": 0.9, "bass": 0.55, "pad": 0.5, "lead": 0.42}
    audio = sum(levels[name] * m.out for name, m in mix.items())
    fade = min(n, int(0.01 * sr))
    audio[n - fade :] *= np.linspace(1.0, 0.0, fade)
    peak = float(np.max(np.abs(audio))) or 1.0
    audio = (0.89 / peak) * audio

    truth = {
        "tempo": float(spec.tempo),
        "beats_per_bar": bpb,
        "key": f"{spec.tonic} {spec.mode}",
        "beats": beats,
        "downbeats": downbeats,
        "chords": truth_chords,
    }
    return audio.astype(np.float32), truth


def write_mp3(path: str | os.PathLike, audio: np.ndarray, sr: int = 44100) -> None:
    """Write mono/stereo float audio as MP3 (libsndfile's LAME encoder).

    libsndfile writes a LAME/Xing header, so decoders drop the encoder delay and
    padding: a 30 s array reads back as 30 s, as Music4All's clips do.
    """
    import soundfile as sf

    data = np.asarray(audio, dtype=np.float32)
    if data.ndim == 2 and data.shape[0] in (1, 2) and data.shape[1] > 2:
        data = data.T  # accept [channels, n] as well as soundfile's [n, channels]
    if data.size == 0:
        raise ValueError("cannot write an empty MP3")
    data = np.clip(np.nan_to_num(data), -1.0, 1.0)
    sf.write(os.fspath(path), data, sr, format="MP3", subtype="MPEG_LAYER_III")
