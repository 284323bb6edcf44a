"""Decoding one clip with PyAV: the sampled frames at working size and the dense thumbnails.

``decode_clip`` opens the file once, seeks once to the clip start and decodes forward. It keeps

- one frame every ``every`` seconds (as RGB, no larger than ``max_side``), plus the frame
  ``motion_gap`` seconds after each, used only to measure within-shot motion;
- a tiny luma/chroma thumbnail of (at most ``THUMB_RATE`` per second of) every decoded frame,
  for the dense measurements (cuts, shake, flicker, rhythm) in ``builders.video.shots``.

Unreadable input (cannot open, no video stream, cannot seek, corrupt, no decodable frames,
timestamps that never progress) raises ``VideoDecodeError`` with the reason; decoding stops
after ``DECODE_DEADLINE_S`` so nothing here waits without bound.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

THUMB_W = 96  # width of the dense thumbnails used for cuts, shake, flicker, rhythm
THUMB_RATE = 15.0  # at most this many thumbnails per second
DECODE_DEADLINE_S = 120.0
MAX_BAD_PACKETS = 25  # damaged packets skipped before decoding gives up

_PLANAR_YUV = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p",
               "yuvj444p", "yuv440p", "yuvj440p", "yuv411p", "yuv410p"}


class VideoDecodeError(ValueError):
    """The video cannot be analysed: missing, unreadable, corrupt, truncated or too short."""


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def fit(w: int, h: int, side: int) -> tuple[int, int]:
    """Even width and height of a w x h picture scaled down (never up) to ``side`` at most."""
    scale = min(1.0, side / float(max(w, h)))
    return _even(w * scale), _even(h * scale)


def _plane(frame, idx: int) -> np.ndarray:
    p = frame.planes[idx]
    arr = np.frombuffer(p, np.uint8)
    height = p.height if hasattr(p, "height") else arr.size // p.line_size
    return arr[: height * p.line_size].reshape(height, p.line_size)[:, : p.width]


def shrink(plane: np.ndarray, w: int, h: int) -> np.ndarray:
    """``plane`` area-averaged down to w x h.

    OpenCV's general INTER_AREA path costs ~2.4 ms for a 720p plane to 96 px and ~2.7 ms to
    512 px, while its exact 2x2 box average (the integer-ratio fast path) costs ~0.25 ms. So a
    plane more than four times the target is first halved (a row/column dropped when odd)
    until it is not, then area-resized once: the same area average up to rounding (mean
    difference ~0.1 luma level on 720p video), at a third of the cost. Planes less than four
    times the target (e.g. 320 px video to 96 px thumbnails) take the single direct resize,
    exactly as before.
    """
    ph, pw = plane.shape[:2]
    while pw >= 4 * w and ph >= 4 * h:
        pw, ph = pw // 2, ph // 2
        plane = cv2.resize(plane[: 2 * ph, : 2 * pw], (pw, ph), interpolation=cv2.INTER_AREA)
    if (pw, ph) != (w, h):
        plane = cv2.resize(plane, (w, h), interpolation=cv2.INTER_AREA)
    return plane


def _thumb(frame, tw: int, th: int, reformatter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Luma (tw x th) and chroma (half size) thumbnails straight from the decoded planes."""
    if frame.format.name not in _PLANAR_YUV:
        frame = reformatter.reformat(frame, format="yuv420p")
    y = shrink(_plane(frame, 0), tw, th)
    half = (max(2, tw // 2), max(2, th // 2))
    u, v = (cv2.resize(_plane(frame, k), half, interpolation=cv2.INTER_NEAREST) for k in (1, 2))
    return y, u, v


def _to_rgb(frame, w: int, h: int, reformatter) -> np.ndarray:
    """The frame as RGB at w x h, scaled while converting.

    I420 (limited range, as OpenCV assumes) is scaled plane by plane to the working size
    (``shrink``) and only then converted by OpenCV (much faster than swscale): a 720p frame
    costs ~4 ms instead of ~7 ms for converting at full size and resizing the RGB, and the
    pixels match that to a mean of ~0.4 levels (chroma is averaged before, not after, the
    upsampling). Frames already at the working size convert exactly as before. Other pixel
    formats go through swscale with one reformatter (and its scaler) kept for the clip.
    """
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0 and w % 2 == 0 and h % 2 == 0:
        planes = [_plane(frame, 0)] + [_plane(frame, k) for k in (1, 2)]
        if (frame.width, frame.height) != (w, h):
            planes = [shrink(planes[0], w, h)] + [shrink(pl, w // 2, h // 2) for pl in planes[1:]]
        i420 = np.concatenate([pl.reshape(-1) for pl in planes])
        return cv2.cvtColor(i420.reshape(h * 3 // 2, w), cv2.COLOR_YUV2RGB_I420)
    return reformatter.reformat(frame, width=w, height=h, format="rgb24").to_ndarray()


class Decoded:
    """What ``decode_clip`` kept; times are clip times (seconds after the clip start)."""

    def __init__(self) -> None:
        self.samples: dict[int, tuple[float, np.ndarray]] = {}  # i -> (when the shown frame started, RGB)
        self.partners: dict[int, tuple[float, np.ndarray]] = {}  # the same, ``motion_gap`` later
        self.thumbs_t: list[float] = []
        self.thumbs_y: list[np.ndarray] = []
        self.thumbs_u: list[np.ndarray] = []
        self.thumbs_v: list[np.ndarray] = []
        self.last: tuple[float, np.ndarray] | None = None  # latest decoded frame (as RGB), only kept at the end
        self.errors: list[str] = []  # damaged packets skipped while decoding
        self.width = self.height = 0
        self.fps = 0.0
        self.duration = 0.0


def _frames(container, stream, out: Decoded):
    """Decode packet by packet, skipping a few damaged packets instead of giving up."""
    import av

    bad = 0
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            bad += 1
            out.errors.append(f"{type(exc).__name__}: {exc}")
            if bad > MAX_BAD_PACKETS:
                raise
            continue
        yield from frames


def _open(path: Path):
    import av

    try:
        return av.open(str(path), mode="r")
    except Exception as exc:  # av raises its own error classes (InvalidDataError, ...)
        raise VideoDecodeError(f"{path}: cannot open as a video ({type(exc).__name__}: {exc})") from exc


def _read_header(container, path: Path, out: Decoded):
    """The video stream, with size, frame rate and duration noted in ``out``; also the
    stream's start offset in seconds (frame times are relative to it).

    The decoder runs on one thread: the build runs one clip per worker process, one worker
    per core, and FFmpeg's default (cores + 1 threads) or frame threading only adds
    switching and copying there (~20% more CPU per clip measured on 2 cores).
    """
    if not container.streams.video:
        raise VideoDecodeError(f"{path}: no video stream")
    stream = container.streams.video[0]
    cc = stream.codec_context
    cc.thread_count = 1
    out.width, out.height = int(cc.width or 0), int(cc.height or 0)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    out.fps = float(rate) if rate else 0.0
    tb = float(stream.time_base) if stream.time_base else 0.0
    start_off = float(stream.start_time * stream.time_base) if (stream.start_time is not None and tb) else 0.0
    if stream.duration is not None and tb:
        out.duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        out.duration = float(container.duration) / 1e6
    return stream, start_off


def _seek(container, stream, path: Path, clip_start: float, start_off: float) -> None:
    tb = float(stream.time_base) if stream.time_base else 0.0
    try:
        if tb:
            container.seek(int((clip_start + start_off) / tb), stream=stream, backward=True, any_frame=False)
        else:
            container.seek(int(clip_start * 1e6), backward=True, any_frame=False)
    except Exception as exc:
        raise VideoDecodeError(f"{path}: cannot seek to {clip_start:.2f} s ({type(exc).__name__}: {exc})") from exc


def _fill(slots: dict, targets: list[float], nxt: int,
          due: Callable[[float], bool], shown: Callable[[float], tuple]) -> int:
    """Set ``slots[i] = shown(targets[i])`` for the targets from ``nxt`` on while they are
    ``due``; return the index of the first target left open."""
    while nxt < len(targets) and due(targets[nxt]):
        slots[nxt] = shown(targets[nxt])
        nxt += 1
    return nxt


def decode_clip(path: Path, n: int, every: float, clip_start: float,
                clip_seconds: float, motion_gap: float, max_side: int) -> Decoded:
    """The ``n`` sampled frames (every ``every`` s from ``clip_start``), their partners
    ``motion_gap`` s later and the thumbnails of the clip's ``clip_seconds``.

    A sample may be missing (the caller decides what is too short); raises ``VideoDecodeError``
    when nothing usable decodes.
    """
    from av.video.reformatter import VideoReformatter

    container = _open(path)
    out = Decoded()
    reformatter = VideoReformatter()  # one scaler for the clip (only for pixel formats other than planar YUV)
    try:
        stream, start_off = _read_header(container, path, out)
        fps_guess = out.fps if 1.0 <= out.fps <= 240.0 else 25.0
        tol = 0.5 / fps_guess
        targets = [clip_start + i * every for i in range(n)]
        partner_targets = [t + motion_gap for t in targets]
        end_t = max(clip_start + clip_seconds, partner_targets[-1]) + tol
        thumb_step = 1.0 / THUMB_RATE
        max_frames = int((end_t + 10.0) * fps_guess * 4) + 2000
        deadline = time.monotonic() + DECODE_DEADLINE_S
        if clip_start > 0:
            _seek(container, stream, path, clip_start, start_off)

        next_s = next_p = 0
        count = 0
        last_thumb = -1e9
        jw = jh = tw = th = 0
        last_frame = None
        last_frame_len = 1.0 / fps_guess
        try:
            for frame in _frames(container, stream, out):
                count += 1
                if count > max_frames or time.monotonic() > deadline:
                    raise VideoDecodeError(f"{path}: decoding did not progress (bad timestamps?) after {count} frames")
                if frame.time is not None:
                    t = float(frame.time) - start_off
                else:
                    t = (count - 1) / fps_guess + (clip_start if clip_start > 0 else 0.0)
                if t < clip_start - tol:
                    continue
                if not jw:  # the first frame of the clip fixes the working sizes
                    fw, fh = frame.width, frame.height
                    out.width, out.height = out.width or fw, out.height or fh
                    jw, jh = fit(fw, fh, max_side)
                    tw = THUMB_W
                    th = max(8, int(round(THUMB_W * fh / max(1, fw))))
                if t > end_t:
                    break
                rt = t - clip_start
                if rt <= clip_seconds + tol and t - last_thumb >= thumb_step - tol:
                    y, u, v = _thumb(frame, tw, th, reformatter)
                    out.thumbs_t.append(rt)
                    out.thumbs_y.append(y)
                    out.thumbs_u.append(u)
                    out.thumbs_v.append(v)
                    last_thumb = t
                # the picture on screen at a target time is the latest frame that started
                # by then (a held frame in sparse, variable-frame-rate video) unless the
                # new one is closer
                if (next_s < n and t >= targets[next_s] - tol) or (next_p < n and t >= partner_targets[next_p] - tol):
                    cache: dict[bool, tuple[float, np.ndarray]] = {}

                    def due(target: float) -> bool:
                        return t >= target - tol

                    def shown(target: float) -> tuple[float, np.ndarray]:
                        held = (last_frame is not None and t > target + tol
                                and (t - target) > (target - (last_frame[1] + clip_start)))
                        if held not in cache:
                            fr, ft = last_frame if held else (frame, rt)  # type: ignore[misc]
                            cache[held] = (ft, _to_rgb(fr, jw, jh, reformatter))
                        return cache[held]

                    next_s = _fill(out.samples, targets, next_s, due, shown)
                    next_p = _fill(out.partners, partner_targets, next_p, due, shown)
                last_frame = (frame, rt)
                if frame.duration and frame.time_base:
                    last_frame_len = float(frame.duration * frame.time_base)
                else:
                    last_frame_len = 1.0 / fps_guess
                if next_s >= n and next_p >= n and rt >= clip_seconds:
                    break
        except VideoDecodeError:
            raise
        except Exception as exc:
            if not out.samples:
                raise VideoDecodeError(f"{path}: corrupt video data ({type(exc).__name__}: {exc})") from exc
            out.errors.append(f"{type(exc).__name__}: {exc}")  # keep what decoded; the frame count decides
        if last_frame is not None and jw:
            frame, rt = last_frame
            # the last frame stays on screen for its duration: it covers targets up to then
            # (a truncated file ends long before its frames say, so it still comes up short)
            held_until = rt + max(last_frame_len, 1.0 / fps_guess)
            last_rgb = functools.cache(lambda: _to_rgb(frame, jw, jh, reformatter))
            if not out.errors:

                def still_shown(target: float) -> bool:
                    return target - clip_start <= held_until - tol

                next_s = _fill(out.samples, targets, next_s, still_shown, lambda _: (rt, last_rgb()))
                next_p = _fill(out.partners, partner_targets, next_p, still_shown, lambda _: (rt, last_rgb()))
            if not out.partners.get(len(out.samples) - 1) and out.samples:
                out.last = (rt, last_rgb())
        if count == 0:
            detail = f" ({out.errors[-1]})" if out.errors else ""
            raise VideoDecodeError(f"{path}: no decodable video frames{detail}")
    finally:
        container.close()
    return out
