"""A whole song -> one MV script (``mv4all describe --whole-song``), from 30 s model calls.

The model hears what it was trained on: one Music4All clip, ``CLIP_SECONDS`` (30 s) long, described as an
overview plus one beat per frame, frames ``FRAME_STEP_SECONDS`` (2 s) apart. A whole song is described in such
windows and put back together on the song's own clock:

1. **Measured facts come in as records.** ``SongFacts`` (tempo, meter, key, chords, downbeats) and
   ``SongSection``s (repeats share a label) are measured once on the whole song by ``builders.song``; this module
   never imports the builder (the command line composes the two), so any measurement that fills the records works.
2. **The bar grid** (:func:`bar_grid`) is what every boundary lands on: the detected downbeats; without them a
   regular grid from the tempo (and meter, else 4 beats), and without a tempo 2 s steps. Long holes in the
   detected downbeats (a break, a silence: more than :data:`GAP_BARS` bars) are filled at the median bar length,
   and a sliver of a bar at either end of the song (a pickup, a ringing tail) joins its neighbour.
3. **Windows** (:func:`plan_windows`) start on section starts, which are downbeats. A section longer than a
   window is split into consecutive spans of about a window each, every span starting on a downbeat; each span
   gets one model call whose 30 s start there (a short section's window runs on into the next one: the model
   still hears a whole clip). Near the end of the song a window is moved back to the last downbeat that leaves
   it whole, so the model never hears padding unless the song is shorter than one window (then: one window,
   zero-padded, as ``describe`` does).
4. **Every window gets the same row** (``build_row``): genres, MV type and lyrics understanding are fixed for
   the song; only the audio changes.
5. **Merging** (:func:`merge_windows`): each window's beats are laid on the bars of the span it is responsible
   for: beat ``j`` covers ``[2j, 2j + 2)`` s of the window (stretched when the span is longer than the window,
   the last beat running to the span's end), and each bar goes to the beat its middle falls in. Consecutive bars
   of one beat make one shot, so shots span whole bars, start and end on the grid, and tile the song from 0 to
   its duration with no gap or overlap. A window whose text has no frame-by-frame breakdown becomes one shot
   over its span with the raw text. The song's overview is the first window's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .schema import (
    CLIP_SECONDS,
    FRAME_STEP_SECONDS,
    MVDescription,
    Shot,
    SongFacts,
    SongScript,
    SongSection,
    SongWindow,
)

__all__ = [
    "DEFAULT_MAX_MINUTES",
    "GAP_BARS",
    "BarGrid",
    "SongTooLongError",
    "WindowPlan",
    "bar_grid",
    "check_duration",
    "clock",
    "describe_song",
    "describe_windows",
    "merge_windows",
    "normalise_sections",
    "plan_windows",
    "probe_duration",
    "window_waveform",
]

DEFAULT_MAX_MINUTES = 15.0
GAP_BARS = 2.5  # a hole in the detected downbeats longer than this many median bars is filled
_EDGE_BAR = 0.5  # a part-bar shorter than this share of a bar at either end of the song joins its neighbour
_SPLIT_SLACK = 0.25  # a section gets another window once it is this share of a window longer than a whole one
_DECIMALS = 3


class SongTooLongError(ValueError):
    """The song is longer than the caller agreed to describe (``--max-minutes``)."""


# --------------------------------------------------------------------------- length


def probe_duration(path: str | os.PathLike) -> float | None:
    """The audio's length in seconds from the container's header (PyAV), without decoding it.

    ``None`` when the header does not say. Raises ``AudioDecodeError`` for a missing, empty or unreadable file,
    so a bad file fails before anything expensive starts.
    """
    import av

    from .audio import AudioDecodeError

    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(f"audio file not found: {path}")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"audio file is empty (0 bytes): {path}")
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"no audio stream in file: {path}")
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return float(container.duration) / av.time_base
    except AudioDecodeError:
        raise
    except (av.FFmpegError, ValueError, EOFError, OSError) as err:
        raise AudioDecodeError(f"cannot decode audio file {path}: {err}") from err
    return None


def check_duration(seconds: float | None, max_minutes: float | None, what: str = "the song") -> None:
    """Refuse (``SongTooLongError``) a song longer than ``max_minutes``; ``None`` limits nothing."""
    if seconds is None or max_minutes is None or max_minutes <= 0:
        return
    if seconds > max_minutes * 60.0 + 1e-6:
        raise SongTooLongError(
            f"{what} is {clock(seconds)} ({seconds / 60:.1f} min), longer than --max-minutes {max_minutes:g}: "
            f"refusing to describe it (raise --max-minutes to allow it)"
        )


# --------------------------------------------------------------------------- the bar grid


@dataclass(frozen=True)
class BarGrid:
    """Bar boundaries from 0 to the song's duration (both included), and where they came from.

    ``source``: "downbeats" (detected), "tempo" (a regular grid from the measured tempo: no downbeats were
    detected) or "steps" (``FRAME_STEP_SECONDS`` steps: neither tempo nor downbeats).
    """

    points: tuple[float, ...]
    source: str

    @property
    def bar(self) -> float:
        """The median bar length (s)."""
        diffs = np.diff(self.points)
        return float(np.median(diffs)) if diffs.size else 0.0

    def inside(self, start: float, end: float) -> list[float]:
        """``start``, the grid points strictly between, and ``end``."""
        return [start, *(p for p in self.points if start + 1e-6 < p < end - 1e-6), end]

    def snap(self, t: float, lo: float = -math.inf, hi: float = math.inf) -> float:
        """The grid point nearest ``t`` within ``[lo, hi]`` (``t`` itself if there is none)."""
        candidates = [p for p in self.points if lo - 1e-6 <= p <= hi + 1e-6]
        return min(candidates, key=lambda p: abs(p - t)) if candidates else t


def bar_grid(facts: SongFacts) -> BarGrid:
    """The bar boundaries every section, window and shot of the song lands on (see the module doc)."""
    duration = float(facts.duration)
    if duration <= 0:
        return BarGrid((0.0, 0.0), "steps")
    downbeats = sorted({round(float(t), _DECIMALS) for t in facts.downbeats if 0.0 < t < duration})
    if len(downbeats) >= 2:
        bar = float(np.median(np.diff(downbeats)))
        points = _fill_gaps([0.0, *downbeats, duration], bar)
        source = "downbeats"
    elif facts.tempo > 0:
        bar = 60.0 / float(facts.tempo) * (facts.beats_per_bar or 4)
        phase = downbeats[0] % bar if downbeats else 0.0
        points = [0.0, *np.arange(phase if phase > 0 else bar, duration, bar).tolist(), duration]
        source = "tempo"
    else:
        bar = FRAME_STEP_SECONDS
        points = [0.0, *np.arange(bar, duration, bar).tolist(), duration]
        source = "steps"
    inner = [p for p in points[1:-1] if p >= _EDGE_BAR * bar and duration - p >= _EDGE_BAR * bar]
    return BarGrid(tuple(round(p, _DECIMALS) for p in [0.0, *inner, duration]), source)


def _fill_gaps(points: list[float], bar: float) -> list[float]:
    out = [points[0]]
    for p in points[1:]:
        base = out[-1]
        gap = p - base
        if bar > 0 and gap > GAP_BARS * bar:
            n = int(round(gap / bar))
            out.extend([base + gap * k / n for k in range(1, n)])
        out.append(p)
    return out


def normalise_sections(sections: Sequence[SongSection], duration: float) -> list[SongSection]:
    """Sections sorted, contiguous and covering ``[0, duration]`` (gaps close, the first starts at 0)."""
    kept = sorted((s for s in sections if s.end > s.start), key=lambda s: s.start)
    if not kept or duration <= 0:
        return [SongSection(start=0.0, end=round(max(duration, 0.0), _DECIMALS), label="A")]
    out: list[SongSection] = []
    for s in kept:
        start = 0.0 if not out else out[-1].end
        end = min(max(s.end, start), duration)
        if end - start > 1e-6:
            out.append(SongSection(start=round(start, _DECIMALS), end=round(end, _DECIMALS), label=s.label))
    if not out:
        return [SongSection(start=0.0, end=round(duration, _DECIMALS), label=kept[0].label)]
    out[-1] = SongSection(start=out[-1].start, end=round(duration, _DECIMALS), label=out[-1].label)
    return out


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class WindowPlan:
    """One model call: the audio it hears (``start`` .. ``start + seconds``) and the span whose shots it writes."""

    start: float
    seconds: float
    span_start: float
    span_end: float
    section: str

    @property
    def record(self) -> SongWindow:
        return SongWindow(start=self.start, end=round(self.start + self.seconds, _DECIMALS), section=self.section)


def plan_windows(facts: SongFacts, sections: Sequence[SongSection], grid: BarGrid | None = None,
                 seconds: float = CLIP_SECONDS) -> list[WindowPlan]:
    """Windows aligned to sections and downbeats (see the module doc); spans tile ``[0, duration]``."""
    duration = float(facts.duration)
    grid = grid or bar_grid(facts)
    sections = normalise_sections(sections, duration)
    if duration <= seconds:
        return [WindowPlan(0.0, seconds, 0.0, round(duration, _DECIMALS), sections[0].label)]
    latest = max([p for p in grid.points if p <= duration - seconds + 1e-6] or [0.0])  # last whole-window start
    plans: list[WindowPlan] = []
    for sec in sections:
        length = sec.end - sec.start
        n = max(1, math.ceil(length / seconds - _SPLIT_SLACK))
        starts = [sec.start]
        for i in range(1, n):
            t = grid.snap(sec.start + i * length / n, lo=starts[-1] + 1e-3, hi=sec.end - 1e-3)
            if starts[-1] < t < sec.end:
                starts.append(t)
        for i, a in enumerate(starts):
            b = starts[i + 1] if i + 1 < len(starts) else sec.end
            heard = a if a <= duration - seconds else latest
            plans.append(WindowPlan(round(heard, _DECIMALS), seconds, round(a, _DECIMALS), round(b, _DECIMALS),
                                    sec.label))
    return plans


def window_waveform(audio: np.ndarray, sample_rate: int, start: float, seconds: float = CLIP_SECONDS) -> np.ndarray:
    """``[channels, seconds * sample_rate]`` of a decoded song from ``start``: ``window_audio``'s cut, in memory.

    The same samples ``describe --start`` hears (clamped to the last whole window; zero-padded when the song is
    shorter than one window).
    """
    audio = np.atleast_2d(audio)
    n, want = audio.shape[1], round(seconds * sample_rate)
    if n > want:
        first = min(round(start * sample_rate), n - want)
        return np.ascontiguousarray(audio[:, first : first + want])
    return np.pad(audio, ((0, 0), (0, want - n))) if want > n else audio


# --------------------------------------------------------------------------- describing


def describe_windows(
    describer,
    audio_path: str | os.PathLike,
    plans: Sequence[WindowPlan],
    *,
    genres: Sequence[str] | None = None,
    mv_type: str | None = None,
    lyrics_understanding: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[tuple[str, bool]]:
    """``(text, truncated)`` per window from a ``mv4all.describe.Describer``, ``decoding.batch_size`` at a time.

    Every window's row has the same genres, MV type and lyrics understanding; only the audio differs. The song
    is decoded once at the encoder's rate and each window is cut from memory. Without music among the inputs
    every window's prompt is the same, so the model is called once.
    """
    from .describe import build_row
    from .inputs import parse_combination

    stem = Path(audio_path).stem
    rows = [build_row(f"{stem}@{p.start:.2f}", genres, mv_type, lyrics_understanding) for p in plans]
    if not plans:
        return []
    if not parse_combination(describer.inputs).uses_audio:
        out = describer.generate_with_stops(rows[:1])
        if progress:
            progress(len(plans))
        return out * len(plans)
    from .audio import load_audio

    sr = describer.sample_rate
    audio = load_audio(audio_path, sr=sr, mono=False)
    size = max(1, int(describer.decoding.batch_size))
    out: list[tuple[str, bool]] = []
    for i in range(0, len(rows), size):
        batch = rows[i : i + size]
        for row, plan in zip(batch, plans[i : i + size]):
            row["input_features"] = describer.processor.waveform_features(window_waveform(audio, sr, plan.start))
        out.extend(describer.generate_with_stops(batch))
        for row in batch:
            row.pop("input_features", None)
        if progress:
            progress(len(batch))
    return out


def _frames(text: str) -> tuple[str, list[tuple[str, str]], bool]:
    """``(overview, [(title, text), ...], structured)`` of one window's text.

    Text without a frame-by-frame breakdown is one frame of raw text (``structured`` False).
    """
    try:
        parsed = MVDescription.parse(text)
    except Exception:  # noqa: BLE001 - unparseable text is used raw
        parsed = None
    if parsed is None or not parsed.beats:
        raw = " ".join(text.split())
        return (parsed.overview if parsed else raw), [("", raw)], False
    return parsed.overview, [(b.title.strip(), " ".join(b.text.split())) for b in parsed.beats], True


def merge_windows(facts: SongFacts, sections: Sequence[SongSection], plans: Sequence[WindowPlan],
                  texts: Sequence[str], grid: BarGrid | None = None) -> tuple[str, list[Shot]]:
    """The song's overview and its shots on absolute times (see the module doc)."""
    if len(texts) != len(plans):
        raise ValueError(f"{len(texts)} texts for {len(plans)} windows")
    grid = grid or bar_grid(facts)
    overview = ""
    shots: list[Shot] = []
    for plan, text in zip(plans, texts):
        window_overview, frames, _ = _frames(text)
        overview = overview or window_overview.strip()
        bars = grid.inside(plan.span_start, plan.span_end)
        single = len(frames) == 1
        step = FRAME_STEP_SECONDS * max(1.0, (plan.span_end - plan.start) / plan.seconds)
        groups: list[tuple[int, float, float]] = []  # (frame, start, end)
        for a, b in zip(bars[:-1], bars[1:]):
            j = 0 if single else min(max(int(((a + b) / 2 - plan.start) // step), 0), len(frames) - 1)
            if groups and groups[-1][0] == j:
                groups[-1] = (j, groups[-1][1], b)
            else:
                groups.append((j, a, b))
        for j, a, b in groups:
            title, body = frames[j]
            last = shots[-1] if shots else None
            if last and last.end == a and (last.title, last.text, last.section) == (title, body, plan.section) \
                    and a > plan.span_start:
                shots[-1] = last.model_copy(update={"end": b})
                continue
            shots.append(Shot(start=round(a, _DECIMALS), end=round(b, _DECIMALS), section=plan.section, title=title,
                              text=body))
    return overview, shots


def describe_song(
    describer,
    audio_path: str | os.PathLike,
    facts: SongFacts,
    sections: Sequence[SongSection],
    *,
    genres: Sequence[str] | None = None,
    mv_type: str | None = None,
    lyrics_understanding: str | None = None,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[list[WindowPlan]], None] | None = None,
    notes: list[str] | None = None,
    model: str | None = None,
) -> SongScript:
    """Measured facts + sections + a ``Describer`` -> the song's ``SongScript``.

    ``on_plan`` hears the windows before any is described (a progress bar's total); ``progress`` is advanced
    after each batch; ``notes`` (if given) collects what the user should know (grid fallbacks, windows whose text
    did not parse, cut-off texts).
    """
    duration = float(facts.duration)
    sections = normalise_sections(sections, duration)
    grid = bar_grid(facts)
    plans = plan_windows(facts, sections, grid)
    if on_plan:
        on_plan(plans)
    results = describe_windows(describer, audio_path, plans, genres=genres, mv_type=mv_type,
                               lyrics_understanding=lyrics_understanding, progress=progress)
    texts = [text for text, _ in results]
    overview, shots = merge_windows(facts, sections, plans, texts, grid)
    if notes is not None:
        if grid.source != "downbeats":
            notes.append(f"no downbeats detected: shots lie on a regular grid ({grid.source}, "
                         f"{grid.bar:.2f} s)")
        if duration < CLIP_SECONDS:
            notes.append(f"the song is {duration:.1f} s, shorter than the {CLIP_SECONDS:g} s the model was trained "
                         f"on: one zero-padded window")
        raw = sum(1 for text in texts if not _frames(text)[2])
        if raw:
            notes.append(f"{raw} of {len(texts)} windows gave no frame-by-frame breakdown: their raw text is one "
                         f"shot each")
        cut = sum(1 for _, truncated in results if truncated)
        if cut:
            notes.append(f"{cut} of {len(texts)} window texts were cut by max_new_tokens")
    genres = [g.strip() for g in (genres or []) if g and g.strip()]
    return SongScript(
        source=Path(audio_path).name, model=model, facts=facts, sections=sections,
        windows=[p.record for p in plans], mv_type=mv_type or "", genres=genres,
        lyrics_understanding=lyrics_understanding or "", overview=overview, shots=shots,
    )


def clock(t: float) -> str:
    """``m:ss.s``."""
    return f"{int(t // 60)}:{t % 60:04.1f}"
