"""``analyse_video``: the sampled frames of one clip as JPEGs, and its ``VisualStats``.

The clip is decoded once (``builders.video.decode``); each sampled frame is written as
``frames_dir/{i:02d}.jpg`` and measured (``builders.video.frame_stats``), and the thumbnail
series gives the cuts and dense measures (``builders.video.shots``). Motion is measured
between each sampled frame and its partner ``motion_gap`` seconds later, only within a shot.
A colour-histogram jump between consecutive samples with no hard cut in between also marks a
new shot (dissolves, missed cuts).

``static_score`` is the median within-shot motion; ``zoom_pan`` is set when most moving pairs
are explained by a global zoom/pan with little left over (a Ken Burns montage of stills).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from builders.video.decode import Decoded, VideoDecodeError, decode_clip
from builders.video.frame_stats import colour_hist, frame_key, global_motion, measure_frame, motion, small_gray
from builders.video.records import FrameStats, VisualStats
from builders.video.shots import Dense, cut_between, dense_measures
from mv4all.schema import CLIP_SECONDS, FRAME_STEP_SECONDS

GRADUAL_HIST = 0.5  # colour-histogram change between consecutive samples that marks a new shot
RIGID_MIN_MOTION = 0.4  # pairs moving less than this do not count for (or against) zoom/pan


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoDecodeError(f"{path}: no such video file")
    if not path.is_file():
        raise VideoDecodeError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file")


def _pair_motion(work: np.ndarray, t: float, partner: tuple[float, np.ndarray],
                 cuts: list[float]) -> tuple[dict, tuple[float, float, bool] | None]:
    """The motion fields of a frame (shown from ``t``, ``work`` at analysis size) against its
    partner, and (raw motion, residual, rigid zoom/pan) when the pair lies within one shot."""
    pt, prgb = partner
    if pt <= t + 1e-6:
        # the same frame is still on screen half a second later: nothing moved
        return {"motion": 0.0, "motion_in_shot": True}, (0.0, 0.0, False)
    a = small_gray(work)
    b = small_gray(prgb)
    raw = motion(a, b)
    gap = pt - t
    in_shot = not cut_between(cuts, t, pt)
    zoom, pan_x, pan_y, resid = global_motion(a, b, raw, gap) if in_shot else (0.0, 0.0, 0.0, raw)
    upd = {"motion": round(raw, 3), "motion_in_shot": in_shot, "zoom": round(zoom, 4),
           "pan_x": round(pan_x, 4), "pan_y": round(pan_y, 4), "residual": round(resid, 3)}
    if not in_shot:
        return upd, None
    moved = abs(zoom) * gap > 0.004 or math.hypot(pan_x * gap * a.shape[1], pan_y * gap * a.shape[0]) > 0.3
    return upd, (raw, resid, raw >= RIGID_MIN_MOTION and moved and resid <= 0.35 * raw)


def _measure_samples(dec: Decoded, frames_dir: Path, every: float,
                     cuts: list[float]) -> tuple[list[FrameStats], list[tuple[float, float, bool]], int]:
    """Write and measure every sampled frame: (frame stats, within-shot pairs, gradual shot changes)."""
    got = len(dec.samples)
    frames: list[FrameStats] = []
    pairs: list[tuple[float, float, bool]] = []
    prev_t = None
    prev_hist = None
    gradual = 0
    # pixel-identical frames (a still image, a slideshow) are encoded and measured once
    memo: dict = {}
    for i in range(got):
        t, rgb = dec.samples[i]  # t: when the shown frame started (clip time)
        key = frame_key(rgb)
        if ("jpeg", key) not in memo:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not ok:
                raise VideoDecodeError(f"cannot encode frame {i} as JPEG")
            memo[("jpeg", key)] = buf.tobytes()
        (frames_dir / f"{i:02d}.jpg").write_bytes(memo[("jpeg", key)])
        partner = dec.partners.get(i)
        if partner is None and dec.last is not None and i == got - 1 and dec.last[0] > t + 1e-6:
            partner = dec.last
        same_shot = partner is not None and not cut_between(cuts, t, partner[0])
        later = partner[1] if same_shot and partner is not None else None
        both = ("stats", key, None if later is None else frame_key(later))
        if both in memo:
            stats, work, hist = memo[both]
            stats = stats.model_copy(update={"t": round(float(i * every), 3)}, deep=True)
        else:
            stats, work = measure_frame(rgb, i * every, later, memo=memo, key=key)
            hist = colour_hist(work)
            memo[both] = (stats, work, hist)
        hard = prev_t is not None and cut_between(cuts, prev_t, t)
        # a big change of the colour distribution since the previous sample with no hard cut
        # in between: a dissolve or a cut the frame-to-frame detector missed
        soft = prev_hist is not None and not hard and 0.5 * float(np.abs(hist - prev_hist).sum()) >= GRADUAL_HIST
        gradual += int(soft)
        prev_hist = hist
        upd: dict = {"cut_before": bool(hard or soft)}
        if partner is None:
            upd["motion_in_shot"] = False
        else:
            fields, pair = _pair_motion(work, t, partner, cuts)
            upd.update(fields)
            if pair is not None:
                pairs.append(pair)
        frames.append(stats.model_copy(update=upd))
        prev_t = t
    return frames, pairs, gradual


def _median(values) -> float:
    return float(np.median(values)) if len(values) else 0.0


def _summary(dec: Decoded, frames: list[FrameStats], pairs: list[tuple[float, float, bool]],
             gradual: int, dense: Dense, clip_seconds: float) -> VisualStats:
    """The clip's ``VisualStats`` from its measured frames, within-shot pairs and dense measures."""
    pair_motion = [p[0] for p in pairs]
    residuals = [p[1] for p in pairs]
    if pair_motion:
        static_score = float(np.median(pair_motion))
    else:  # every pair straddles a cut: judge by the change across them
        static_score = float(np.median([f.motion for f in frames])) if frames else 0.0
    moving_pairs = [rigid for m, _, rigid in pairs if m >= RIGID_MIN_MOTION]
    rigid_share = float(np.mean(moving_pairs)) if moving_pairs else 0.0
    med_resid = float(np.median(residuals)) if residuals else 0.0
    zoom_pan = bool(len(moving_pairs) >= 3 and rigid_share >= 0.6 and med_resid < 0.6)
    cuts = dense.cuts
    span = max(1e-6, min(clip_seconds, (dec.thumbs_t[-1] if dec.thumbs_t else clip_seconds)))
    letterboxed = [f.letterbox for f in frames]
    return VisualStats(
        width=int(dec.width),
        height=int(dec.height),
        fps=round(float(dec.fps), 3),
        duration=round(float(dec.duration), 3),
        frames=frames,
        static_score=round(static_score, 3),
        shot_count=1 + len(cuts) + gradual,
        zoom_pan=zoom_pan,
        cut_times=[round(c, 3) for c in cuts],
        cuts_per_minute=round((len(cuts) + gradual) * 60.0 / span, 2),
        zoom_pan_share=round(rigid_share, 3),
        residual_motion=round(med_resid, 3),
        letterbox=bool(sum(letterboxed) >= 0.6 * len(letterboxed)),
        brightness=round(_median([f.brightness for f in frames]), 2),
        saturation=round(_median([f.saturation for f in frames]), 4),
        colourfulness=round(_median([f.colourfulness for f in frames]), 2),
        flat_colour=round(_median([f.flat_colour for f in frames]), 4),
        layering=round(_median([f.layering for f in frames]), 4),
        face_share=round(sum(1 for f in frames if f.faces) / len(frames), 3),
        text_share=round(sum(1 for f in frames if f.text_overlay) / len(frames), 3),
        shake=dense.shake,
        flicker=dense.flicker,
        motion_periodicity=dense.periodicity,
        motion_bpm=dense.bpm,
    )


def analyse_video(
    path,
    frames_dir: Path,
    *,
    every: float = FRAME_STEP_SECONDS,
    clip_start: float = 0.0,
    clip_seconds: float = CLIP_SECONDS,
    motion_gap: float = 0.5,
    max_side: int = 512,
    min_frames: int | None = None,
) -> VisualStats:
    """Sample frames, write them as JPEGs and measure the clip (see the module docstring).

    ``min_frames`` (default: every frame of the clip, ``clip_seconds / every``) is the fewest
    sampled frames accepted; fewer raises ``VideoDecodeError`` ("too short"). JPEGs left in
    ``frames_dir`` by an earlier, longer run are removed.
    """
    if every <= 0 or clip_seconds <= 0 or motion_gap <= 0:
        raise ValueError("every, clip_seconds and motion_gap must be positive")
    path = Path(path)
    frames_dir = Path(frames_dir)
    n = max(1, int(math.floor(clip_seconds / every + 1e-6)))
    need = n if min_frames is None else max(1, min(int(min_frames), n))
    _check_file(path)

    dec = decode_clip(path, n, every, clip_start, clip_seconds, motion_gap, max_side)
    got = len(dec.samples)
    if got < need:
        have = dec.thumbs_t[-1] if dec.thumbs_t else 0.0
        damaged = f"; decoding stopped on damaged data ({dec.errors[-1]})" if dec.errors else ""
        raise VideoDecodeError(
            f"{path}: too short: {got} of {n} frames (every {every:g} s from {clip_start:g} s); "
            f"decodable video ends about {clip_start + have:.1f} s, need {need} frames{damaged}"
        )
    dense = dense_measures(dec)

    frames_dir.mkdir(parents=True, exist_ok=True)
    for old in frames_dir.glob("[0-9][0-9].jpg"):
        if int(old.stem) >= got:
            old.unlink()
    frames, pairs, gradual = _measure_samples(dec, frames_dir, every, dense.cuts)
    return _summary(dec, frames, pairs, gradual, dense, clip_seconds)
