"""Shots and dense motion measures from the thumbnail series of one clip.

From the tiny luma/chroma thumbnails ``builders.video.decode`` keeps of (at most 15 per second
of) every decoded frame, ``dense_measures`` finds

- hard cuts: an adaptive content detector, a frame-to-frame change far above the local
  level, spread over the frame, that does not flash back (see ``_detect_cuts``);
- handheld shake: jitter of the global shift between thumbnails;
- brightness flicker: high-frequency changes of the mean brightness within shots;
- periodic (rhythmic) motion: the autocorrelation peak of the motion energy, and its tempo.

A global shift (a pan or a shaking camera) that explains the change between two thumbnails
is compensated first, so a moving camera is not read as a sequence of cuts.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from builders.video.decode import Decoded


class Dense(NamedTuple):
    cuts: list[float]  # clip times at which a new shot starts (hard cuts)
    flicker: float = 0.0
    shake: float = 0.0
    periodicity: float = 0.0
    bpm: float | None = None


def cut_between(cuts: list[float], a: float, b: float) -> bool:
    """Whether a hard cut falls after time ``a`` and by time ``b``: the two frames shown then
    belong to different shots."""
    return any(a < c <= b + 1e-6 for c in cuts)


def _moving_average(x: np.ndarray, k: int) -> np.ndarray:
    if k <= 1 or x.size == 0:
        return x.copy()
    pad = k // 2
    xp = np.pad(x, (pad, k - 1 - pad), mode="edge")
    return np.convolve(xp, np.ones(k) / k, mode="valid")


def _grid_diffs(ys: np.ndarray, us: np.ndarray, vs: np.ndarray) -> np.ndarray:
    """Mean absolute luma + chroma change per cell of a 4x4 grid, for each consecutive pair."""

    def cells(stack: np.ndarray) -> np.ndarray:
        k, h, w = stack.shape
        gh, gw = h // 4, w // 4
        d = np.abs(np.diff(stack[:, : gh * 4, : gw * 4], axis=0))
        return d.reshape(k - 1, 4, gh, 4, gw).mean(axis=(2, 4))

    out = np.zeros((ys.shape[0], 4, 4), np.float32)
    out[1:] = cells(ys) + cells(us) + cells(vs)
    return out


def _detect_cuts(sdiff: np.ndarray, grid: np.ndarray, z: np.ndarray, uv: np.ndarray, per_sec: int) -> list[int]:
    """Indices i where a new shot starts between thumbnails i-1 and i.

    Like an adaptive content detector: a cut is a spike of the brightness-normalised frame
    difference at least 3x the local level of within-shot change (and well above both
    neighbours), that jumps in most of the frame (rows and columns of a 4x4 grid, each
    against its own recent level, so a new caption line over a moving background is not a
    cut), and whose new picture persists (a flash or strobe whose picture comes back within
    a second is not a cut).
    """
    k = sdiff.size
    back_span = max(2, per_sec)
    rows = grid.mean(axis=2)  # (k, 4)
    cols = grid.mean(axis=1)
    cuts: list[int] = []
    for i in range(1, k):
        d = float(sdiff[i])
        if d < 0.15:
            continue
        lo, hi = max(1, i - 8), min(k, i + 9)
        neigh = np.concatenate([sdiff[lo:i], sdiff[i + 1 : hi]])
        level = max(0.04, float(np.median(neigh)) if neigh.size else 0.0)
        side = max(float(sdiff[i - 1]) if i > 1 else 0.0, float(sdiff[i + 1]) if i + 1 < k else 0.0)
        if d < 3.0 * level or d < 1.3 * side:
            continue
        idx = [j for j in range(lo, hi) if j != i]
        if idx:
            row_level = np.maximum(np.median(rows[idx], axis=0), 0.2)
            col_level = np.maximum(np.median(cols[idx], axis=0), 0.2)
            if int((rows[i] >= 2.0 * row_level).sum()) < 4 or int((cols[i] >= 2.0 * col_level).sum()) < 3:
                continue  # a local change (a caption line, one object), not a new shot
        later = range(i + 1, min(k, i + 1 + back_span))
        if later and min(float(np.abs(z[j] - z[i - 1]).mean()) + float(np.abs(uv[j] - uv[i - 1]).mean()) / 20.0
                         for j in later) < 0.6 * d:
            continue  # the picture came back: a flash, not a cut
        if cuts and i - cuts[-1] < 2:
            continue
        cuts.append(i)
    return cuts


def _structure_change(ys: np.ndarray, z: np.ndarray,
                      ldiff: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per consecutive pair: the brightness-normalised change (after compensating a global
    shift where one explains it), the same without compensation, the shift, and whether the
    shift explained the change."""
    k, hh, ww = ys.shape
    win = cv2.createHanningWindow((ww, hh), cv2.CV_32F)
    shifts = np.zeros((k, 2), np.float32)
    explained = np.zeros(k, bool)
    b = 3  # border left out when comparing a shifted picture
    zd = np.abs(np.diff(z, axis=0))
    plain_all = np.zeros(k, np.float32)
    plain_all[1:] = zd.reshape(k - 1, -1).mean(1)
    plain_z = plain_all.copy()
    plain_inner = np.zeros(k, np.float32)
    plain_inner[1:] = zd[:, b:-b, b:-b].reshape(k - 1, -1).mean(1)
    still = ldiff < 0.05  # identical frames: nothing to measure
    for i in range(1, k):
        if still[i]:
            continue
        (dx, dy), resp = cv2.phaseCorrelate(ys[i - 1], ys[i], win)
        if resp > 0.1 and abs(dx) < ww / 6 and abs(dy) < hh / 6 and (abs(dx) > 0.05 or abs(dy) > 0.05):
            moved = cv2.warpAffine(z[i - 1], np.float32([[1, 0, dx], [0, 1, dy]]),
                                   (ww, hh), borderMode=cv2.BORDER_REPLICATE)
            comp = float(np.abs(z[i] - moved)[b:-b, b:-b].mean())
            if comp < 0.7 * plain_inner[i]:
                explained[i] = True
                shifts[i] = (dx, dy)
                plain_all[i] = min(plain_all[i], comp * plain_all[i] / max(float(plain_inner[i]), 1e-6))
    return plain_all, plain_z, shifts, explained


def _flicker(mu: np.ndarray, cuts: list[int], in_shot: np.ndarray, per_sec: int) -> float:
    """High-frequency brightness changes within shots."""
    if in_shot.sum() < 4:
        return 0.0
    hp = mu - _moving_average(mu, per_sec)
    seg_ok = in_shot.copy()
    for c in cuts:  # the moving average straddles cuts: ignore half a second around them
        seg_ok[max(0, c - per_sec // 2) : c + per_sec // 2 + 1] = False
    if seg_ok.sum() < 4:
        return 0.0
    return round(float(np.std(hp[seg_ok])), 3)


def _shake(shifts: np.ndarray, explained: np.ndarray, in_shot: np.ndarray, per_sec: int, width: int) -> float:
    """Jitter (high-frequency part) of the global shift, where a shift explains the change,
    in percent of the thumbnail width."""
    if in_shot.sum() < 6:
        return 0.0
    sh = np.where((in_shot & explained)[:, None], shifts, 0.0)
    jit = sh - np.stack([_moving_average(sh[:, 0], per_sec), _moving_average(sh[:, 1], per_sec)], axis=1)
    mag = np.sqrt((jit[in_shot] ** 2).sum(1))
    return round(float(np.sqrt(np.mean(mag**2))) / width * 100.0, 3)


def _rhythm(plain_z: np.ndarray, in_shot: np.ndarray, per_sec: int, dt: float) -> tuple[float, float | None]:
    """(periodicity, bpm): the periodic component of the motion energy (lag 0.25 s .. 1.6 s).

    The energy is the brightness-normalised change, so a pulsing light alone is not rhythmic
    motion; the tempo is given only for a clear peak (autocorrelation above 0.2).
    """
    k = plain_z.size
    energy = plain_z.astype(np.float64).copy()
    if in_shot.sum() < per_sec * 4:
        return 0.0, None
    med = float(np.median(energy[in_shot]))
    energy[~in_shot] = med
    x = energy - _moving_average(energy, per_sec * 2)
    x = x - x.mean()
    denom = float((x * x).sum())
    lo_lag, hi_lag = max(2, int(round(0.25 / dt))), min(k // 3 - 1, int(round(1.6 / dt)))
    if not (denom > 1e-6 and hi_lag > lo_lag):
        return 0.0, None
    ac = np.array([float((x[:-lag] * x[lag:]).sum()) / denom for lag in range(lo_lag - 1, hi_lag + 2)])
    # the strongest interior local maximum (a peak at the search edge is no period)
    peaks = [j for j in range(1, ac.size - 1) if ac[j] >= ac[j - 1] and ac[j] >= ac[j + 1]]
    if not peaks:
        return 0.0, None
    j = max(peaks, key=lambda q: ac[q])
    peak = float(ac[j])
    lag = float(lo_lag - 1 + j)
    a_, b_, c_ = ac[j - 1], ac[j], ac[j + 1]
    den = a_ - 2 * b_ + c_
    if abs(den) > 1e-9:  # parabolic interpolation of the peak between lags
        lag += 0.5 * (a_ - c_) / den
    return round(max(0.0, peak), 3), (round(60.0 / (lag * dt), 1) if peak > 0.2 else None)


def dense_measures(dec: Decoded) -> Dense:
    """Cuts, flicker, shake and motion rhythm from the thumbnail series."""
    t = np.asarray(dec.thumbs_t, np.float64)
    k = t.size
    if k < 3:
        return Dense(cuts=[])
    ys = np.stack(dec.thumbs_y).astype(np.float32)
    us = np.stack(dec.thumbs_u).astype(np.float32)
    vs = np.stack(dec.thumbs_v).astype(np.float32)
    dt = float(np.median(np.diff(t)))
    per_sec = max(1, int(round(1.0 / max(dt, 1e-3))))
    # brightness-normalised structure (flashes change gain, cuts change structure) + chroma
    mu = ys.reshape(k, -1).mean(1)
    sd = ys.reshape(k, -1).std(1)
    z = (ys - mu[:, None, None]) / (sd[:, None, None] + 8.0)
    chroma = np.zeros(k, np.float32)
    chroma[1:] = (np.abs(np.diff(us, axis=0)).reshape(k - 1, -1).mean(1)
                  + np.abs(np.diff(vs, axis=0)).reshape(k - 1, -1).mean(1)) / 40.0
    ldiff = np.zeros(k, np.float32)
    ldiff[1:] = np.abs(np.diff(ys, axis=0)).reshape(k - 1, -1).mean(1)
    plain_all, plain_z, shifts, explained = _structure_change(ys, z, ldiff)
    uv = np.concatenate([us.reshape(k, -1), vs.reshape(k, -1)], axis=1)
    cuts = _detect_cuts(plain_all + chroma, _grid_diffs(ys, us, vs), z, uv, per_sec)
    in_shot = np.ones(k, bool)
    in_shot[0] = False
    in_shot[cuts] = False
    periodicity, bpm = _rhythm(plain_z, in_shot, per_sec, dt)
    return Dense(
        cuts=[float(t[i]) for i in cuts],
        flicker=_flicker(mu, cuts, in_shot, per_sec),
        shake=_shake(shifts, explained, in_shot, per_sec, ys.shape[2]),
        periodicity=periodicity,
        bpm=bpm,
    )
