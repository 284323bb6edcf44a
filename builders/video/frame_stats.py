"""What is measured on one sampled frame, and on it against its partner a moment later.

Per frame: colour (mean, named dominant colours, brightness, saturation, colourfulness, flat
saturated colour fields), layout (letterbox bars, horizontal layering, edge density) and
content (faces, caption/lyric text bands). Per pair (see ``builders.video.analysis``): raw
change, global zoom/pan, and the residual change left after the zoom/pan.

Everything is measured on the frame scaled to ``ANALYSIS_SIDE`` at most, so the numbers do
not depend on the source resolution or on the size of the JPEGs kept.
"""

from __future__ import annotations

import hashlib
import math

import cv2
import numpy as np

from builders.video.decode import fit
from builders.video.faces import detect_faces
from builders.video.records import FrameStats

COLOUR_NAMES = ("black", "white", "gray", "red", "orange", "yellow",
                "green", "teal", "cyan", "blue", "purple", "pink", "brown")

ANALYSIS_SIDE = 384  # statistics are measured on frames no larger than this (longest side)
NOISE_FLOOR = 2.0  # luma levels of per-pixel change ignored as compression noise


# --------------------------------------------------------------------------- colour


def _name_colours(rgb: np.ndarray) -> np.ndarray:
    """Index into COLOUR_NAMES for every pixel (vectorised HSV rules)."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)
    h = hsv[..., 0].astype(np.float32) * (360.0 / 256.0)
    s = hsv[..., 1].astype(np.float32) / 255.0
    v = hsv[..., 2].astype(np.float32) / 255.0
    idx = np.full(h.shape, COLOUR_NAMES.index("gray"), np.int8)
    chroma = s >= 0.22
    hue_names = np.select(
        [h < 12, h < 42, h < 70, h < 160, h < 200, h < 255, h < 290, h < 340],
        [3, 4, 5, 6, 8, 9, 10, 11],
        default=3,
    ).astype(np.int8)
    # teal: the darker blue-greens; brown: dark or greyish oranges/reds; pink: pale reds
    overrides = (
        ((h >= 160) & (h < 200) & (v < 0.62), 7),
        ((h >= 150) & (h < 165) & (s > 0.5), 7),
        ((h >= 8) & (h < 48) & ((v < 0.58) | ((s < 0.45) & (v < 0.75))), 12),
        (((h < 12) | (h >= 340)) & (s < 0.5) & (v > 0.75), 11),
    )
    for where, name in overrides:
        hue_names = np.where(where, name, hue_names).astype(np.int8)
    idx = np.where(chroma, hue_names, idx)
    idx = np.where(~chroma & (v > 0.8), COLOUR_NAMES.index("white"), idx)
    idx = np.where(v < 0.16, COLOUR_NAMES.index("black"), idx)
    idx = np.where((v < 0.24) & (s < 0.5), COLOUR_NAMES.index("black"), idx)
    return idx


def _dominant_colours(rgb: np.ndarray, top: int = 3, min_share: float = 0.1) -> list[str]:
    small = cv2.resize(rgb, (80, max(2, int(80 * rgb.shape[0] / max(1, rgb.shape[1])))), interpolation=cv2.INTER_AREA)
    counts = np.bincount(_name_colours(small).ravel(), minlength=len(COLOUR_NAMES)).astype(np.float64)
    share = counts / max(1.0, counts.sum())
    order = [int(i) for i in np.argsort(-share, kind="stable")]
    names = [COLOUR_NAMES[i] for i in order[:top] if share[i] >= min_share]
    return names or [COLOUR_NAMES[order[0]]]


def _colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk's colourfulness (opponent-colour spread plus mean)."""
    f = rgb.astype(np.float32)
    rg = f[..., 0] - f[..., 1]
    yb = 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
    return float(math.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * math.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


def _flat_colour(rgb: np.ndarray, hsv: np.ndarray) -> float:
    """Share of pixels that sit in flat (no texture, no gradient) and saturated colour fields."""
    small_w = 160
    scale = small_w / max(1, rgb.shape[1])
    if scale < 1.0:
        rgb = cv2.resize(rgb, (small_w, max(4, int(rgb.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        hsv = cv2.resize(hsv, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
    f = rgb.astype(np.float32)
    mean = cv2.boxFilter(f, -1, (5, 5))
    sq = cv2.boxFilter(f * f, -1, (5, 5))
    std = np.sqrt(np.maximum(sq - mean * mean, 0.0)).max(axis=2)
    flat = std < 1.6
    sat = (hsv[..., 1] > 90) & (hsv[..., 2] > 70)
    return float((flat & sat).mean())


def colour_hist(rgb: np.ndarray) -> np.ndarray:
    """Normalised hue x saturation x value histogram (12 x 4 x 4 bins)."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    h = cv2.calcHist([hsv], [0, 1, 2], None, [12, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
    return h / max(1.0, float(h.sum()))


# --------------------------------------------------------------------------- layout and content


def _letterbox(gray: np.ndarray) -> tuple[int, int]:
    """Rows of near-black, uniform bars at the top and bottom (0, 0 when there are none)."""
    h = gray.shape[0]
    means = gray.mean(axis=1)
    stds = gray.std(axis=1)
    dark = (means < 24.0) & (stds < 8.0)
    top = int(np.argmin(dark)) if not dark.all() else h
    bottom = int(np.argmin(dark[::-1])) if not dark.all() else h
    if top >= h // 2 or bottom >= h // 2:
        return 0, 0
    lo, hi = min(top, bottom), max(top, bottom)
    if lo < 0.05 * h or hi > 0.3 * h or (hi - lo) > 0.35 * hi + 2:
        return 0, 0
    inner = gray[top : h - bottom]
    if inner.size == 0 or float(inner.mean()) < float(means[:top].mean()) + 4.0:
        return 0, 0
    return top, bottom


def _layering(gray: np.ndarray) -> float:
    """Share of the picture's variance that lies between rows: high for horizontal bands
    (sky over hills over water, parallax layers), low for texture or vertical structure."""
    g = cv2.resize(gray, (64, max(4, int(64 * gray.shape[0] / max(1, gray.shape[1])))),
                   interpolation=cv2.INTER_AREA).astype(np.float32)
    total = float(g.var())
    if total < 25.0:  # an almost uniform picture has no structure to speak of
        return 0.0
    return float(g.mean(axis=1).var() / total)


def _text_overlay(gray: np.ndarray, later: np.ndarray | None = None) -> bool:
    """A caption/lyric-like line of text: a wide band of dense, high-contrast strokes in both
    directions that (when ``later``, the same view a moment later, is given) holds still
    while the picture moves, as overlaid text does."""
    h, w = gray.shape
    moving = None
    if later is not None and later.shape == gray.shape:
        moving = cv2.absdiff(cv2.blur(gray, (3, 3)), cv2.blur(later, (3, 3)))
    grad = cv2.morphologyEx(gray, cv2.MORPH_GRADIENT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    strokes = (grad > 70).astype(np.uint8)
    line = cv2.getStructuringElement(cv2.MORPH_RECT, (max(5, w // 40), 3))
    joined = cv2.morphologyEx(cv2.morphologyEx(strokes, cv2.MORPH_CLOSE, line), cv2.MORPH_OPEN, line)
    n, _, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    for i in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        if not (0.04 * h <= bh <= 0.16 * h and bw >= 0.2 * w and bw >= 4 * bh):
            continue
        if area < 0.55 * bw * bh:
            continue
        band = strokes[y : y + bh, x : x + bw]
        density = float(band.mean())
        if not (0.18 <= density <= 0.75):
            continue
        mid = band[bh // 4 : bh - bh // 4 + 1]
        transitions = float(np.abs(np.diff(mid.astype(np.int8), axis=1)).sum(axis=1).mean())
        if transitions / bw < 0.12:  # letters: many stroke edges along the line
            continue
        inside = gray[y : y + bh, x : x + bw]
        if float(np.percentile(inside, 95)) - float(np.percentile(inside, 5)) < 90:
            continue
        gx = float(np.abs(cv2.Sobel(inside, cv2.CV_32F, 1, 0, ksize=3)).sum())
        gy = float(np.abs(cv2.Sobel(inside, cv2.CV_32F, 0, 1, ksize=3)).sum())
        if gy < 0.3 * gx or gx < 0.3 * gy:  # letters have strokes both ways; bars, fences, faders do not
            continue
        if moving is not None:
            band_change = float(moving[y : y + bh, x : x + bw].mean())
            if band_change > max(6.0, 1.5 * float(moving.mean())):
                continue  # the band moves with the scene: texture (foliage, crowd), not an overlay
        return True
    return False


def _analysis_size(rgb: np.ndarray) -> np.ndarray:
    h0, w0 = rgb.shape[:2]
    if max(h0, w0) > ANALYSIS_SIDE:
        rgb = cv2.resize(rgb, fit(w0, h0, ANALYSIS_SIDE), interpolation=cv2.INTER_AREA)
    return rgb


def frame_key(rgb: np.ndarray) -> bytes:
    """A digest of a frame's pixels (and shape), to recognise pixel-identical frames: a still
    image or a slideshow repeats its picture from sample to sample."""
    h = hashlib.blake2b(np.ascontiguousarray(rgb).data, digest_size=16)
    h.update(repr(rgb.shape).encode())
    return h.digest()


def measure_frame(rgb: np.ndarray, t: float, later: np.ndarray | None = None, *,
                  memo: dict | None = None, key: bytes | None = None) -> tuple[FrameStats, np.ndarray]:
    """Everything measured on one frame except motion (filled in later), and the frame at
    analysis size; ``later`` is the frame a moment after it in the same shot, if any (used to
    tell overlays from texture).

    With ``memo`` (one dict per clip) and ``key`` (``frame_key(rgb)``), the faces found on a
    frame are reused for a pixel-identical frame: the detector is ~75% of this function's cost
    and a still or slideshow repeats its picture, and the same pixels give the same faces.
    """
    rgb = _analysis_size(rgb)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    later_gray = cv2.cvtColor(_analysis_size(later), cv2.COLOR_RGB2GRAY) if later is not None else None
    h, w = gray.shape
    top, bottom = _letterbox(gray)
    pic = rgb[top : h - bottom] if (top or bottom) else rgb
    pgray = gray[top : h - bottom] if (top or bottom) else gray
    hsv = cv2.cvtColor(pic, cv2.COLOR_RGB2HSV_FULL)
    faces = memo.get(("faces", key)) if memo is not None and key is not None else None
    if faces is None:
        faces = detect_faces(gray)
        if memo is not None and key is not None:
            memo[("faces", key)] = faces
    face_size = float(max((fh for (_, _, _, fh) in faces), default=0)) / h
    edges = cv2.Canny(pgray, 80, 160)
    stats = FrameStats(
        t=round(float(t), 3),
        mean_rgb=[round(float(c), 2) for c in pic.reshape(-1, 3).mean(axis=0)],
        brightness=round(float(pgray.mean()), 2),
        saturation=round(float(hsv[..., 1].mean()) / 255.0, 4),
        colours=_dominant_colours(pic),
        motion=0.0,
        cut_before=False,
        faces=int(len(faces)),
        text_overlay=_text_overlay(gray, later_gray),
        edge_density=round(float((edges > 0).mean()), 4),
        letterbox=bool(top or bottom),
        bars=round((top + bottom) / float(h), 4),
        colourfulness=round(_colourfulness(pic), 2),
        flat_colour=round(_flat_colour(pic, hsv), 4),
        layering=round(_layering(pgray), 4),
        face_size=round(face_size, 4),
    )
    return stats, rgb


# --------------------------------------------------------------------------- motion between two frames


def small_gray(rgb: np.ndarray, width: int = 160) -> np.ndarray:
    """The frame as lightly blurred grayscale ``width`` px wide, for the motion measures."""
    h = max(4, int(round(rgb.shape[0] * width / max(1, rgb.shape[1]))))
    g = cv2.cvtColor(cv2.resize(rgb, (width, h), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    return cv2.GaussianBlur(g, (3, 3), 0)


def motion(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute luma change above the compression-noise floor (of ``small_gray`` frames)."""
    d = cv2.absdiff(a, b).astype(np.float32)
    return float(np.maximum(d - NOISE_FLOOR, 0.0).mean())


def global_motion(a: np.ndarray, b: np.ndarray, raw: float, gap: float) -> tuple[float, float, float, float]:
    """(zoom/s, pan_x/s, pan_y/s, residual) of b relative to a from tracked corners; the
    residual is the change left once a is warped by the zoom/pan (``raw`` when none is found)."""
    h, w = a.shape
    if raw <= 0.05:
        return 0.0, 0.0, 0.0, raw
    pts = cv2.goodFeaturesToTrack(a, maxCorners=150, qualityLevel=0.01, minDistance=5, blockSize=5)
    if pts is None or len(pts) < 8:
        return 0.0, 0.0, 0.0, raw
    nxt, status, _ = cv2.calcOpticalFlowPyrLK(a, b, pts, None, winSize=(15, 15), maxLevel=3)
    ok = status.ravel() == 1
    if ok.sum() < 8:
        return 0.0, 0.0, 0.0, raw
    m, inl = cv2.estimateAffinePartial2D(pts[ok], nxt[ok], method=cv2.RANSAC, ransacReprojThreshold=1.0)
    if m is None or inl is None or inl.mean() < 0.5:
        return 0.0, 0.0, 0.0, raw
    scale = float(math.sqrt(abs(np.linalg.det(m[:, :2]))))
    cx, cy = w / 2.0, h / 2.0
    moved = m @ np.array([cx, cy, 1.0])
    dx, dy = float(moved[0] - cx), float(moved[1] - cy)
    warped = cv2.warpAffine(a, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mx, my = max(2, int(w * 0.08)), max(2, int(h * 0.08))
    residual = motion(warped[my : h - my, mx : w - mx], b[my : h - my, mx : w - mx])
    return (scale - 1.0) / gap, -dx / w / gap, -dy / h / gap, residual
