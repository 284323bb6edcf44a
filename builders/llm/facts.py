"""Measured facts rendered as prompt text, and the fence that keeps lyrics inert.

The model only ever sees numbers the builder measured (madmom/librosa features, visual
statistics, Music4All metadata), written the same way for every clip so prompts differ only
where the clips differ. Lyrics are third-party text: they travel inside a fence whose marker
is derived from their own hash (so they cannot contain it) and in which anything shaped like
a fence marker is defanged; the system message never changes with them.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from builders.music_theory import chord_text, sounding_chord
from builders.video.records import VisualStats
from mv4all.schema import FRAME_STEP_SECONDS, FrameCaption, MusicFeatures, Track

MAX_CHORD_CHANGES = 32


def _fmt(x: float | None, nd: int = 2) -> str:
    return "unknown" if x is None else f"{x:.{nd}f}"


def pretty_chord(label: str) -> str:
    """madmom "A:min" -> "Am", "C:maj" -> "C", "N" -> "no chord" (the prompts' spelling)."""
    return chord_text(label, no_chord="no chord")


# ---------------------------------------------------------------------------- metadata


def track_block(track: Track | None, names: bool = True) -> str:
    """Music4All metadata; ``names=False`` for targets that must describe sound, not the artist."""
    if track is None:
        return "Metadata: none"
    lines = []
    if names:
        lines += [f"Artist: {_one_line(track.artist)}", f"Song: {_one_line(track.song)}"]
    lines.append(f"Genres: {', '.join(_one_line(g) for g in track.genres) or 'unknown'}")
    lines.append(f"Tags: {', '.join(_one_line(t) for t in track.tags) or 'none'}")
    if track.release:
        lines.append(f"Release year: {_one_line(track.release)}")
    if track.instrumental:
        lines.append("Language: instrumental (no vocals)")
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()[:200]


# ---------------------------------------------------------------------------- music


def chord_at(features: MusicFeatures, t: float) -> str:
    """The chord sounding at ``t``; "no chord" past the last tracked one, too."""
    chord = sounding_chord(features.chords, t)
    return pretty_chord(chord.label) if chord is not None else "no chord"


def bar_position(features: MusicFeatures, t: float) -> str:
    """Bar number and beat of time ``t`` (from the tracked beats), e.g. "bar 3, beat 1 (downbeat)"."""
    beats = [b for b in features.beats if b.time <= t + 0.08]
    if not beats:
        return "before the first beat"
    last = beats[-1]
    bar = sum(1 for d in features.downbeats if d <= last.time + 1e-6)
    where = f"bar {max(bar, 1)}, beat {last.number}"
    return where + (" (downbeat)" if last.number == 1 and abs(t - last.time) < 0.25 else "")


def chord_progression(features: MusicFeatures) -> str:
    changes: list[str] = []
    previous = None
    for ch in features.chords:
        name = pretty_chord(ch.label)
        if name != previous:
            changes.append(f"{ch.start:.1f}s {name}")
            previous = name
    if len(changes) > MAX_CHORD_CHANGES:
        changes = changes[:MAX_CHORD_CHANGES] + [f"... ({len(changes) - MAX_CHORD_CHANGES} more changes)"]
    return " -> ".join(changes) or "no chords detected"


def music_block(features: MusicFeatures | None) -> str:
    if features is None:
        return "Music features: not measured"
    f, lib = features, features.librosa
    first_down = f"first at {f.downbeats[0]:.2f}s" if f.downbeats else "none tracked"
    return "\n".join([
        f"Duration: {f.duration:.1f}s",
        f"Tempo: {f.tempo:.1f} BPM (tempo strength {f.tempo_strength:.2f} of 1)",
        f"Meter: {f.beats_per_bar} beats per bar; downbeats: {len(f.downbeats)} ({first_down})",
        f"Key: {f.key} (confidence {f.key_confidence:.2f})",
        f"Chord progression (time chord): {chord_progression(f)}",
        f"Energy: {_fmt(f.energy)}; valence: {_fmt(f.valence)}; danceability: {_fmt(f.danceability)} "
        "(Spotify scale 0-1; valence is musical positiveness)",
        f"Loudness: {lib.loudness_db:.1f} dB; dynamic range: {lib.dynamic_range_db:.1f} dB",
        f"Spectral centroid: {lib.spectral_centroid_hz:.0f} Hz; rolloff: {lib.spectral_rolloff_hz:.0f} Hz; "
        f"flatness: {lib.spectral_flatness:.4f}",
        f"Onset rate: {lib.onset_rate:.2f} per second; percussive energy share: {lib.percussive_ratio:.2f}",
    ])


# ---------------------------------------------------------------------------- video


def visual_block(visual: VisualStats | None) -> str:
    if visual is None:
        return "Video measurements: none"
    v = visual
    lines = [
        f"Frames sampled: {len(v.frames)} (every {_spacing(v)}s); source {v.width}x{v.height} at {v.fps:.0f} fps",
        f"Shots: {v.shot_count}; cuts per minute: {v.cuts_per_minute:.1f}",
        f"Within-shot motion (static score): {v.static_score:.2f}; camera zoom/pan over stills: "
        f"{'yes' if v.zoom_pan else 'no'}",
        f"Share of frames with faces: {v.face_share:.2f}; with text overlays: {v.text_share:.2f}",
        f"Brightness: {v.brightness:.0f}/255; saturation: {v.saturation:.2f}; colourfulness: {v.colourfulness:.0f}; "
        f"flat cartoon-like colour: {v.flat_colour:.2f}; letterboxed: {'yes' if v.letterbox else 'no'}",
    ]
    if v.motion_bpm:
        lines.append(f"Periodic motion: {v.motion_bpm:.0f} events per minute (strength {v.motion_periodicity:.2f})")
    return "\n".join(lines)


def _spacing(visual: VisualStats) -> str:
    ts = [fr.t for fr in visual.frames]
    return f"{(ts[1] - ts[0]):.1f}" if len(ts) > 1 else "?"


def frame_times(visual: VisualStats | None, n: int) -> list[float]:
    if visual is not None and len(visual.frames) == n:
        return [fr.t for fr in visual.frames]
    return [FRAME_STEP_SECONDS * i for i in range(n)]


def frame_timeline(visual: VisualStats | None, captions: list[FrameCaption] | None,
                   features: MusicFeatures | None) -> str:
    """One line per frame: time, caption, and what the music is doing at that moment."""
    n = len(captions or []) or (len(visual.frames) if visual else 0)
    times = frame_times(visual, n)
    lines = []
    for i in range(n):
        t = times[i]
        parts = [f"Frame {i + 1} (t={t:.1f}s)"]
        if captions and i < len(captions):
            parts.append(_one_line(captions[i].caption)[:400])
        if visual is not None and i < len(visual.frames) and visual.frames[i].cut_before:
            parts.append("[cut before this frame]")
        if features is not None:
            parts.append(f"music: {chord_at(features, t)}, {bar_position(features, t)}")
        lines.append(" | ".join(parts))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- untrusted text

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def fence_id(text: str, label: str) -> str:
    return f"{label}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12].upper()}"


def fence(text: str, label: str = "LYRICS") -> str:
    """``<<<LABEL-ID`` ... ``LABEL-ID>>>`` around untrusted text that cannot close it early.

    Any ``<<<``/``>>>`` run inside is defanged to guillemets, so no line in the block can
    look like a fence marker, and the ID is a hash of the cleaned text, which a text cannot
    contain. Bidi overrides and control characters are dropped.
    """
    clean = unicodedata.normalize("NFC", (text or "").replace("\r\n", "\n").replace("\r", "\n"))
    clean = _CONTROL.sub("", clean)
    clean = re.sub(r"<{3,}", lambda m: "\u2039" * len(m.group()), clean)
    clean = re.sub(r">{3,}", lambda m: "\u203a" * len(m.group()), clean)
    clean = clean.strip("\n") or "(empty)"
    marker = fence_id(clean, label)
    return f"<<<{marker}\n{clean}\n{marker}>>>"
