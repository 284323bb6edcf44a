"""Whole-song measurement for ``mv4all describe --whole-song``: the song's facts and its sections, once.

The builder measures 30 s clips (``builders.features``); a song is up to ``--max-minutes`` long, and madmom's
pipeline grows with the length it is given (its three STFTs, the networks' intermediate arrays and the downbeat
DBN's Viterbi table: ~2.5 GB for 3 minutes in one piece). So the song is measured in chunks of
``chunk_seconds`` with ``context_seconds`` of audio on each side, and only small per-frame results are kept:

- **beats, downbeats, tempo**: the downbeat network runs per chunk (with context, so the bidirectional
  network sees past the cut) and its 100 fps activations are joined; madmom's comb-filter tempo runs on the
  whole beat evidence (beat + downbeat activation, as in ``builders.features``); the downbeat DBN decodes chunk
  by chunk (again with context), keeping the beats of each chunk's core, so the Viterbi table stays the size of
  one chunk. The meter is the one most beats were decoded in.
- **key**: madmom's key CNN per chunk, its probabilities averaged over the song (weighted by length).
- **chords**: madmom's chord CNN features per chunk (with context), joined, then one CRF decode over the song.
- **sections**: chroma, MFCCs and loudness from one STFT per chunk, averaged per bar of the song's bar grid
  (``mv4all.song.bar_grid``: the detected downbeats), so every section boundary is a downbeat. Boundaries are
  the peaks of Foote's checkerboard novelty on the bars' self-similarity (harmony, timbre, loudness and the
  bar's own length, i.e. pace), about one per ``section_seconds``, each nudged by up to two bars to the best
  least-squares split; the sections are then clustered by their mean features so that repeats share a label
  ("A", "B", ... in order of appearance), and neighbours with the same label become one section. (librosa's
  ``segment.agglomerative`` was tried first: on the test songs it put boundaries a bar off, and its fixed
  segment count split parts; the novelty + refinement found every change of the test song.)

Peak memory is the decoded song (44.1 kHz mono float32: ~106 MB for 10 minutes, decoded frame by frame into one
buffer) plus one chunk's worth of madmom; ``last_timings`` and ``peak_rss_mb`` report the cost. Bad input fails
early: a missing or corrupt file with ``mv4all.audio.AudioDecodeError``, a song beyond ``max_minutes`` with
``mv4all.song.SongTooLongError`` after reading only the file's header.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from builders.features import (
    FPS,
    SAMPLE_RATE,
    SILENCE_PEAK,
    UNKNOWN_KEY,
    FeatureExtractor,
    beat_evidence,
    choose_tempo,
)
from mv4all.audio import AudioDecodeError, decode_frames, open_audio_stream
from mv4all.schema import Chord, SongFacts, SongSection
from mv4all.song import (
    DEFAULT_MAX_MINUTES,
    BarGrid,
    SongTooLongError,
    bar_grid,
    check_duration,
    clock,
    probe_duration,
)

__all__ = ["SongAnalyzer", "decode_mono", "measure_song", "segment_bars", "section_features"]

CHORD_FPS = 10  # madmom's chord CNN features
_HOP = SAMPLE_RATE // FPS  # 441 samples per activation frame
_CHORD_HOP = SAMPLE_RATE // CHORD_FPS
_FEATURE_HOP = 2048  # section features: ~46 ms frames
_FEATURE_FFT = 4096
_DECIMALS = 3


# --------------------------------------------------------------------------- decoding


def decode_mono(path: str | os.PathLike, sr: int = SAMPLE_RATE, expected_seconds: float | None = None,
                max_minutes: float | None = None) -> np.ndarray:
    """The whole file as mono float32 at ``sr``, decoded frame by frame into one buffer.

    Same samples as ``mv4all.audio.load_audio(path, sr, mono=True)`` (the plain channel mean, damaged packets
    skipped), without holding the decoded channels and their concatenation next to the result. Decoding stops
    with ``SongTooLongError`` as soon as it passes ``max_minutes`` (for files whose header did not say).
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(f"audio file not found: {path}")
    buf = np.empty(int(((expected_seconds or 60.0) + 1.0) * sr), dtype=np.float32)
    n, origin = 0, None
    limit = None if not max_minutes or max_minutes <= 0 else int(max_minutes * 60.0 * sr) + sr

    def append(out) -> None:
        nonlocal buf, n
        x = out.to_ndarray()
        mono = x.mean(axis=0) if x.shape[0] > 1 else x[0]
        if n + mono.size > buf.size:
            grown = np.empty(max(2 * buf.size, n + mono.size), dtype=np.float32)
            grown[:n] = buf[:n]
            buf = grown
        buf[n : n + mono.size] = mono
        n += mono.size
        if limit is not None and n > limit:
            raise SongTooLongError(f"{path.name} is longer than --max-minutes {max_minutes:g} (decoding stopped at "
                                   f"{clock(n / sr)}): refusing to describe it (raise --max-minutes to allow it)")

    try:
        with open_audio_stream(path) as (container, stream, t0):
            resampler = av.AudioResampler(format="fltp", rate=sr)
            for frame in decode_frames(container, stream):  # damaged packets skipped, as load_audio does
                if origin is None:
                    origin = float(frame.time) - t0 if frame.time is not None else 0.0
                for out in resampler.resample(frame):
                    append(out)
            for out in resampler.resample(None):
                append(out)
    except (AudioDecodeError, SongTooLongError):
        raise
    except (av.FFmpegError, ValueError, EOFError, OSError) as err:
        raise AudioDecodeError(f"cannot decode audio file {path}: {err}") from err
    skip = max(0, -int(round((origin or 0.0) * sr)))  # as load_audio: samples before the stream's start
    if n - skip <= 0:
        raise AudioDecodeError(f"audio file is empty (0 samples): {path}")
    y = buf[skip:n]
    return y.copy() if buf.size > 1.5 * y.size + sr else y  # a grossly wrong header estimate: give memory back


# --------------------------------------------------------------------------- the analyzer


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


class SongAnalyzer:
    """Measure whole songs with madmom's models loaded once (reuse it across songs).

    ``extractor``: a ``builders.features.FeatureExtractor`` to share (its ONNX sessions are the expensive
    part); ``chunk_seconds`` / ``context_seconds``: the chunking that bounds memory (see the module doc);
    ``section_seconds``: about one section per this many seconds before repeats are merged.
    """

    def __init__(self, extractor: FeatureExtractor | None = None, *, chunk_seconds: float = 40.0,
                 context_seconds: float = 8.0, section_seconds: float = 25.0):
        self.extractor = extractor or FeatureExtractor()
        # whole tenths of a second: chunk edges stay on both the 100 fps and the 10 fps frame grids
        self.chunk_frames = max(10, int(round(chunk_seconds * CHORD_FPS)) * (FPS // CHORD_FPS))
        self.context_frames = max(0, int(round(context_seconds * CHORD_FPS)) * (FPS // CHORD_FPS))
        self.section_seconds = float(section_seconds)
        self.last_timings: dict[str, float] = {}
        self.peak_rss_mb = 0.0

    # ------------------------------------------------------------------ entry points

    def measure_file(self, path: str | os.PathLike, *, max_minutes: float | None = DEFAULT_MAX_MINUTES
                     ) -> tuple[SongFacts, list[SongSection]]:
        """Probe the length (refusing a song beyond ``max_minutes`` before decoding), decode, measure."""
        started = time.perf_counter()
        expected = probe_duration(path)
        check_duration(expected, max_minutes, what=Path(path).name)
        y = decode_mono(path, SAMPLE_RATE, expected, max_minutes=max_minutes)  # stops past the limit
        check_duration(len(y) / SAMPLE_RATE, max_minutes, what=Path(path).name)
        decode_s = time.perf_counter() - started
        result = self.measure(y)
        self.last_timings = {"decode": round(decode_s, 3), **self.last_timings}
        return result

    def measure(self, y: np.ndarray) -> tuple[SongFacts, list[SongSection]]:
        """Facts and sections of a mono 44.1 kHz song (float samples)."""
        y = np.asarray(y, dtype=np.float32)
        if y.ndim != 1 or y.size == 0:
            raise ValueError(f"expected mono samples, got shape {y.shape}")
        if not np.isfinite(y).all():
            raise ValueError("audio contains NaN/inf samples")
        timings: dict[str, float] = {}
        duration = len(y) / SAMPLE_RATE
        silent = float(np.max(np.abs(y))) < SILENCE_PEAK or duration < 1.0
        down_act, chord_feats, key_probs, feats, feat_times = self._chunked_networks(y, silent, timings)
        t = time.perf_counter()
        beats, meter = ([], 0) if silent else self._downbeats(down_act)
        timings["downbeat_dbn"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        if silent:
            tempo, key, chords = 0.0, UNKNOWN_KEY, [Chord(start=0.0, end=round(duration, _DECIMALS), label="N")]
        else:
            fx = self.extractor
            tempo, _ = choose_tempo(fx._tempi(beat_evidence(down_act)), [b for b, _ in beats])
            key = _key_label(key_probs)
            chords = self._chords(chord_feats, duration)
        timings["tempo_key_chords"] = round(time.perf_counter() - t, 3)
        del down_act, chord_feats
        facts = SongFacts(duration=round(duration, _DECIMALS), tempo=float(tempo), beats_per_bar=meter, key=key,
                          downbeats=[round(b, _DECIMALS) for b, number in beats if number == 1], chords=chords)
        t = time.perf_counter()
        grid = bar_grid(facts)
        sections = segment_bars(_bar_means(feats, feat_times, grid), grid, self.section_seconds)
        timings["sections"] = round(time.perf_counter() - t, 3)
        self.last_timings = timings
        self.peak_rss_mb = round(_peak_rss_mb(), 1)
        return facts, sections

    # ------------------------------------------------------------------ chunked madmom

    def _chunks(self, n_frames: int):
        """``(core_start, core_end, start, end)`` in 100 fps frames; cores tile ``[0, n_frames)``."""
        for c0 in range(0, n_frames, self.chunk_frames):
            c1 = min(c0 + self.chunk_frames, n_frames)
            yield c0, c1, max(0, c0 - self.context_frames), min(n_frames, c1 + self.context_frames)

    def _chunked_networks(self, y: np.ndarray, silent: bool, timings: dict[str, float]):
        from madmom.audio.signal import Signal

        fx = self.extractor
        n_frames = math.ceil(len(y) / _HOP)
        n_chord = math.ceil(len(y) / _CHORD_HOP)
        down_act = np.zeros((n_frames, 2), dtype=np.float32)
        chord_feats: np.ndarray | None = None
        key_sum, key_weight = None, 0.0
        feats, times = [], []
        for c0, c1, f0, f1 in self._chunks(n_frames):
            chunk = y[f0 * _HOP : min(f1 * _HOP, len(y))]
            core = y[c0 * _HOP : min(c1 * _HOP, len(y))]
            with _add_time(timings, "section_features"):
                f, tt = section_features(core, SAMPLE_RATE, offset=c0 / FPS)
            feats.append(f)
            times.append(tt)
            if silent or float(np.max(np.abs(chunk))) < SILENCE_PEAK:
                continue
            signal = Signal(chunk, sample_rate=SAMPLE_RATE, num_channels=1)
            with _add_time(timings, "downbeat_rnn"):
                down_act[c0:c1] = fx.downbeat_activations(chunk)[c0 - f0 : c1 - f0]
            with _add_time(timings, "chord_cnn"):
                cf = np.asarray(fx.chord_feat(signal), dtype=np.float32)
            if chord_feats is None:
                chord_feats = np.zeros((n_chord, cf.shape[1]), dtype=np.float32)
            k0, k1 = c0 // (FPS // CHORD_FPS), min(math.ceil(c1 / (FPS // CHORD_FPS)), n_chord)
            offset = f0 // (FPS // CHORD_FPS)
            chord_feats[k0:k1] = cf[k0 - offset : k1 - offset]
            if len(core) >= SAMPLE_RATE or key_weight == 0.0:  # a sliver at the end says little about the key
                with _add_time(timings, "key_cnn"):
                    probs = np.atleast_2d(fx.key_proc(Signal(core, sample_rate=SAMPLE_RATE, num_channels=1)))[0]
                key_sum = probs * len(core) if key_sum is None else key_sum + probs * len(core)
                key_weight += len(core)
        key_probs = None if key_sum is None else key_sum / key_weight
        return (down_act, chord_feats, key_probs, np.concatenate(feats, axis=1),
                np.concatenate(times))

    def _downbeats(self, act: np.ndarray) -> tuple[list[tuple[float, int]], int]:
        """``[(time, beat number)]`` decoded chunk by chunk, and the meter most beats were decoded in."""
        proc = self.extractor.downbeat_proc
        beats: list[tuple[float, int]] = []
        meters: dict[int, int] = {}
        for c0, c1, f0, f1 in self._chunks(len(act)):
            part = act[f0:f1]
            if part.size == 0 or not np.any(part > 1e-3):
                continue
            grid = np.atleast_2d(proc(part))
            if grid.size == 0:
                continue
            times, numbers = grid[:, 0] + f0 / FPS, grid[:, 1].astype(int)
            keep = (times >= c0 / FPS) & (times < c1 / FPS)
            meter = int(numbers.max())
            kept = [(float(t), int(n)) for t, n in zip(times[keep], numbers[keep])]
            if beats and kept:
                ibi = float(np.median(np.diff(times))) if len(times) > 1 else 0.5
                while kept and kept[0][0] - beats[-1][0] < 0.5 * ibi:  # the two decodes met at the seam twice
                    kept.pop(0)
            beats.extend(kept)
            meters[meter] = meters.get(meter, 0) + len(kept)
        if not beats:
            return [], 0
        meter = max(meters, key=meters.get)
        return beats, meter if meter in (3, 4) else 0

    def _chords(self, feats: np.ndarray | None, duration: float) -> list[Chord]:
        if feats is None or len(feats) == 0:
            return [Chord(start=0.0, end=round(duration, _DECIMALS), label="N")]
        chords = []
        for start, end, label in self.extractor.chord_proc(feats):
            start, end = round(float(start), _DECIMALS), round(min(float(end), duration), _DECIMALS)
            if end > start:
                chords.append(Chord(start=start, end=end, label=str(label)))
        return chords or [Chord(start=0.0, end=round(duration, _DECIMALS), label="N")]


@contextlib.contextmanager
def _add_time(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - start, 3)


def _key_label(probs: np.ndarray | None) -> str:
    if probs is None:
        return UNKNOWN_KEY
    from madmom.features.key import key_prediction_to_label

    return str(key_prediction_to_label(np.atleast_2d(probs)))


def measure_song(path: str | os.PathLike, *, max_minutes: float | None = DEFAULT_MAX_MINUTES,
                 analyzer: SongAnalyzer | None = None) -> tuple[SongFacts, list[SongSection]]:
    """``SongAnalyzer().measure_file(path)``: the song's facts and sections."""
    return (analyzer or SongAnalyzer()).measure_file(path, max_minutes=max_minutes)


# --------------------------------------------------------------------------- sections


def section_features(y: np.ndarray, sr: int = SAMPLE_RATE, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``(features [33, frames], frame times)``: chroma (12), MFCC (20) and log-RMS from one STFT."""
    import librosa

    if len(y) < _FEATURE_FFT // 2:
        return np.zeros((33, 0), dtype=np.float32), np.zeros(0)
    S = np.abs(librosa.stft(y, n_fft=_FEATURE_FFT, hop_length=_FEATURE_HOP, center=True))
    power = S**2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=_FEATURE_FFT, tuning=0.0)
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_mels=64)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20)
    rms = np.log(np.maximum(librosa.feature.rms(S=S, frame_length=_FEATURE_FFT)[0], 1e-6))
    times = offset + librosa.frames_to_time(np.arange(S.shape[1]), sr=sr, hop_length=_FEATURE_HOP)
    return np.vstack([chroma, mfcc, rms[None, :]]).astype(np.float32), times


def _bar_means(feats: np.ndarray, times: np.ndarray, grid: BarGrid) -> np.ndarray:
    """``[33, bars]``: the mean feature frame of each bar of ``grid`` (nearest frame for a bar with none)."""
    points = np.asarray(grid.points)
    n_bars = max(len(points) - 1, 0)
    out = np.zeros((feats.shape[0], n_bars), dtype=np.float32)
    if feats.shape[1] == 0:
        return out
    idx = np.searchsorted(points, times, side="right") - 1
    for k in range(n_bars):
        sel = idx == k
        if np.any(sel):
            out[:, k] = feats[:, sel].mean(axis=1)
        else:
            out[:, k] = feats[:, int(np.argmin(np.abs(times - (points[k] + points[k + 1]) / 2)))]
    return out


def _standardise(bars: np.ndarray, bar_seconds: np.ndarray) -> np.ndarray:
    """Per-bar features on comparable scales, each block with an equal say.

    Harmony: chroma normalised per bar, then z-scored over the song (12 dims). Timbre: MFCCs z-scored (20 dims).
    Loudness and pace on fixed scales, not z-scored, so that a steady song's small wobbles stay small: log-RMS
    at one unit per 3 dB, the bar's length at one unit per 5 % of tempo, both clipped at 3.
    """
    def z(a: np.ndarray) -> np.ndarray:
        return (a - a.mean(axis=1, keepdims=True)) / np.maximum(a.std(axis=1, keepdims=True), 1e-6)

    chroma = bars[:12] / np.maximum(bars[:12].sum(axis=0, keepdims=True), 1e-9)
    pace = np.log(np.maximum(bar_seconds, 1e-3))
    pace = np.clip((pace - np.median(pace)) / 0.05, -3.0, 3.0)[None, :]
    loud = bars[32:33] * (20.0 / np.log(10.0))  # dB
    loud = np.clip((loud - np.median(loud)) / 3.0, -3.0, 3.0)
    return np.vstack([z(chroma) / np.sqrt(12), z(bars[12:32]) / np.sqrt(20), loud, pace])


def _novelty(X: np.ndarray, half: int) -> np.ndarray:
    """Foote's checkerboard novelty on the bars' cosine self-similarity: ``nov[i]`` scores a boundary before bar
    ``i`` (Gaussian-tapered kernel of ``half`` bars a side, normalised by the part of it inside the song)."""
    unit = X / np.maximum(np.linalg.norm(X, axis=0, keepdims=True), 1e-9)
    S = unit.T @ unit
    n = S.shape[0]
    offsets = np.arange(-half, half) + 0.5
    taper = np.exp(-0.5 * (offsets / (0.6 * half)) ** 2)
    kernel = np.outer(taper, taper) * np.outer(np.sign(offsets), np.sign(offsets))
    nov = np.zeros(n + 1)
    for i in range(1, n):
        lo, hi = max(0, i - half), min(n, i + half)
        k = kernel[lo - i + half : hi - i + half, lo - i + half : hi - i + half]
        nov[i] = float((S[lo:hi, lo:hi] * k).sum() / np.abs(k).sum())
    return nov


def segment_bars(bars: np.ndarray, grid: BarGrid, section_seconds: float = 20.0) -> list[SongSection]:
    """Sections from per-bar features: boundaries on bars, repeats sharing a label (see the module doc).

    Candidate boundaries are the peaks of a checkerboard novelty curve (a kernel of ~12 s a side) that are local
    maxima over +-2 bars and at least ~6 s from each other and from the song's ends; the strongest
    ``duration / section_seconds - 1`` of those reaching a quarter of the strongest are kept and refined
    (:func:`_refine`); neighbours that :func:`_repeat_labels` calls the same part are joined.
    """
    points = np.asarray(grid.points, dtype=float)
    n_bars = len(points) - 1
    duration = float(points[-1])
    whole = [SongSection(start=0.0, end=round(duration, _DECIMALS), label="A")]
    k = int(round(duration / section_seconds))
    if n_bars < 4 or k <= 1:
        return whole
    lengths = np.diff(points)
    bar = float(np.median(lengths))
    X = _standardise(bars, lengths)
    nov = _novelty(X, half=int(np.clip(round(12.0 / bar), 3, 8)))
    apart = max(2, int(round(6.0 / bar)))
    local = [i for i in range(apart, n_bars - apart + 1)
             if nov[i] > 0 and nov[i] >= nov[max(0, i - 2) : i + 3].max()]
    chosen: list[int] = []
    for i in sorted(local, key=lambda i: -nov[i]):
        if nov[i] < 0.25 * nov[local].max() or len(chosen) >= k - 1:
            break
        if all(abs(i - j) >= apart for j in chosen):
            chosen.append(i)
    if not chosen:
        return whole
    bounds = _refine([0, *sorted(chosen), n_bars], X, reach=2)
    means = np.stack([X[:, a:b].mean(axis=1) for a, b in zip(bounds[:-1], bounds[1:])])
    labels = _repeat_labels(means, X, bounds)
    sections: list[SongSection] = []
    for (a, b), label in zip(zip(bounds[:-1], bounds[1:]), labels):
        start, end = round(float(points[a]), _DECIMALS), round(float(points[b]), _DECIMALS)
        if sections and sections[-1].label == label:
            sections[-1] = SongSection(start=sections[-1].start, end=end, label=label)
        else:
            sections.append(SongSection(start=start, end=end, label=label))
    return sections


def _refine(bounds: list[int], X: np.ndarray, reach: int) -> list[int]:
    """Move each inner boundary by up to ``reach`` bars to where the bars on either side (up to the neighbouring
    boundaries) fit their own side's mean best (least squares): the smoothed novelty peak can sit a bar off."""
    out = list(bounds)
    for b in range(1, len(out) - 1):
        lo, hi = out[b - 1], out[b + 1]

        def cost(j: int) -> float:
            left, right = X[:, lo:j], X[:, j:hi]
            return float(((left - left.mean(axis=1, keepdims=True)) ** 2).sum()
                         + ((right - right.mean(axis=1, keepdims=True)) ** 2).sum())

        candidates = [j for j in range(out[b] - reach, out[b] + reach + 1) if lo + 1 < j < hi - 1]
        if candidates:
            out[b] = min(candidates, key=lambda j: (cost(j), abs(j - out[b])))
    return out


def _repeat_labels(means: np.ndarray, X: np.ndarray, bounds: list[int]) -> list[str]:
    """Cluster the sections' mean features (average linkage): two sections are one part when their means are
    closer than half the typical distance of a bar from its own section's mean (repeats of a part measure
    0.1-0.5 of it apart, different parts 0.8 and more). Labels in order of first appearance."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(means) == 1:
        return ["A"]
    spread = np.median(np.concatenate([np.linalg.norm(X[:, a:b] - means[i][:, None], axis=0)
                                       for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]))
    clusters = fcluster(linkage(means, method="average"), t=0.5 * float(spread), criterion="distance")
    names: dict[int, str] = {}
    out = []
    for c in clusters:
        if c not in names:
            names[c] = _label(len(names))
        out.append(names[c])
    return out


def _label(i: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return letters[i] if i < len(letters) else letters[i % 26] + str(i // 26)
