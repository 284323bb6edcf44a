"""Decode and resample any audio file into a numpy array.

One decoder (PyAV's bundled FFmpeg) for every container the project meets: Music4All's
MP3 clips, WAV/FLAC/M4A from users, and the audio track of music-video MP4s. madmom
reads MP3 only through an external ``ffmpeg`` executable, so every consumer decodes
here and passes arrays on.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["AudioDecodeError", "load_audio"]


class AudioDecodeError(ValueError):
    """The file cannot give audio samples (missing, unreadable, corrupt or empty).

    A ``ValueError`` so that callers treating bad input generically still catch it,
    while pipelines can report it per clip instead of crashing the whole build.
    """


def load_audio(
    path: str | os.PathLike,
    sr: int = 44100,
    mono: bool = True,
    offset: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Return float32 samples at ``sr``: shape ``[n]`` if ``mono`` else ``[channels, n]``.

    ``offset``/``duration`` are in seconds; decoding stops once ``duration`` is covered,
    so reading 30 s out of a long video does not decode the whole file. Mono is the
    plain channel mean (what madmom and librosa do), not FFmpeg's downmix matrix.
    """
    import av  # deferred: importing PyAV loads FFmpeg, which light callers may never need

    path = Path(path)
    if sr <= 0:
        raise ValueError(f"sr must be positive, got {sr}")
    if offset < 0 or (duration is not None and duration < 0):
        raise ValueError(f"offset and duration must be >= 0, got {offset}, {duration}")
    if not path.is_file():
        raise AudioDecodeError(f"audio file not found: {path}")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"audio file is empty (0 bytes): {path}")

    start = int(round(offset * sr))
    want = None if duration is None else int(round(duration * sr))
    chunks: list[np.ndarray] = []
    have = 0  # samples decoded so far, counted from ``origin``
    origin: float | None = None  # stream time (s) of the first decoded sample
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"no audio stream in file: {path}")
            stream = container.streams.audio[0]
            t0 = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            if offset > 0 and stream.time_base is not None:
                # Seek lands at or before the target; the exact trim happens below.
                try:
                    container.seek(int((offset + t0) / stream.time_base), stream=stream, backward=True, any_frame=False)
                except av.FFmpegError:
                    container.seek(0, stream=stream)
            resampler = av.AudioResampler(format="fltp", rate=sr)
            for frame in _frames(container, stream):
                if origin is None:
                    origin = float(frame.time) - t0 if frame.time is not None else 0.0
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray()
                    chunks.append(chunk)
                    have += chunk.shape[1]
                if want is not None and have >= (start - _origin_samples(origin, sr)) + want:
                    break
            else:
                for out in resampler.resample(None):
                    chunk = out.to_ndarray()
                    chunks.append(chunk)
                    have += chunk.shape[1]
    except AudioDecodeError:
        raise
    except (av.FFmpegError, ValueError, EOFError, OSError) as err:
        raise AudioDecodeError(f"cannot decode audio file {path}: {err}") from err

    if not chunks or have == 0:
        if offset > 0:
            raise AudioDecodeError(f"no audio samples at offset {offset:g} s: {path}")
        raise AudioDecodeError(f"audio file is empty (0 samples): {path}")
    audio = np.concatenate(chunks, axis=1) if len(chunks) > 1 else chunks[0]
    # Trim to the requested window relative to where decoding actually started.
    first = max(0, start - _origin_samples(origin or 0.0, sr))
    audio = audio[:, first:] if want is None else audio[:, first : first + want]
    if audio.shape[1] == 0:
        raise AudioDecodeError(
            f"no audio samples at offset {offset:g} s (file is {have / sr:.2f} s long): {path}"
        )
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if mono:
        return audio.mean(axis=0) if audio.shape[0] > 1 else audio[0].copy()
    return audio


def _origin_samples(origin: float, sr: int) -> int:
    return int(round(origin * sr))


def _frames(container, stream):
    """Decoded audio frames, skipping damaged packets instead of aborting the file.

    Real MP3s often carry a few broken frames; one bad packet should cost a few
    milliseconds of audio, not the clip. A file where nothing decodes still fails
    (empty result) with a clear message.
    """
    import av

    errors = 0
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.InvalidDataError:
            errors += 1
            if errors > 100:
                raise
            continue
        yield from frames
