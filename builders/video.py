"""Frames and visual statistics of one music-video clip, and the static filter.

``analyse_video`` opens the file once with PyAV, seeks once to the clip start and decodes
forward. It keeps

- one frame every ``every`` seconds (15 for a 30 s clip at the paper's 2 s), written as
  ``frames_dir/{i:02d}.jpg``, plus the frame ``motion_gap`` seconds after each, used only to
  measure within-shot motion;
- a tiny luma/chroma thumbnail of (at most 15 per second of) every decoded frame, from which
  hard cuts (an adaptive content detector: a frame-to-frame change far above the local level,
  spread over the frame, that does not flash back), handheld shake, brightness flicker and
  periodic (rhythmic) motion are measured. A colour-histogram jump between consecutive
  samples with no hard cut in between also marks a new shot (dissolves, missed cuts).

Per sampled frame it measures colour (mean, named dominant colours, brightness, saturation,
colourfulness, flat saturated colour fields), layout (letterbox bars, horizontal layering,
edge density), content (faces with OpenCV's bundled frontal-face Haar cascade, caption/lyric
text bands) and motion (vs its partner: raw change, global zoom/pan, residual after the
zoom/pan). ``static_decision`` turns ``static_score`` (median within-shot motion) into the
keep/drop decision with a human-readable reason.

Unreadable input (missing, empty, not a video, truncated, too short) raises
``VideoDecodeError`` with the reason; nothing here waits without bound.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import cv2
import numpy as np

from mv4all.schema import CLIP_SECONDS, FRAME_STEP_SECONDS, FrameStats, VisualStats

COLOUR_NAMES = ("black", "white", "gray", "red", "orange", "yellow", "green", "teal", "cyan", "blue", "purple", "pink", "brown")

ANALYSIS_SIDE = 384  # statistics are measured on frames no larger than this (longest side)
THUMB_W = 96  # width of the dense thumbnails used for cuts, shake, flicker, rhythm
THUMB_RATE = 15.0  # at most this many thumbnails per second
NOISE_FLOOR = 2.0  # luma levels of per-pixel change ignored as compression noise
GRADUAL_HIST = 0.5  # colour-histogram change between consecutive samples that marks a new shot
DECODE_DEADLINE_S = 120.0


class VideoDecodeError(ValueError):
    """The video cannot be analysed: missing, unreadable, corrupt, truncated or too short."""


# --------------------------------------------------------------------------- shared resources

_CASCADE = None


def _face_cascade():
    """OpenCV's bundled frontal-face cascade, loaded once per process."""
    global _CASCADE
    if _CASCADE is None:
        xml = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        cascade = cv2.CascadeClassifier(str(xml))
        if cascade.empty():  # pragma: no cover - depends on the OpenCV wheel
            raise RuntimeError(f"cannot load the Haar face cascade from {xml} (opencv-python-headless<5 ships it)")
        _CASCADE = cascade
    return _CASCADE


def _stretch(gray: np.ndarray) -> np.ndarray:
    """Linear contrast stretch (1st..99th percentile), so dim or hazy faces are found too."""
    lo, hi = np.percentile(gray, (1, 99))
    if hi - lo < 8:
        return gray
    return cv2.convertScaleAbs(gray, alpha=255.0 / (hi - lo), beta=-lo * 255.0 / (hi - lo))


def _detect_faces(gray: np.ndarray) -> np.ndarray:
    """Frontal faces at least ~13% of the shorter side (x, y, w, h rows)."""
    side = max(24, int(min(gray.shape) * 0.13))
    found = _face_cascade().detectMultiScale(_stretch(gray), scaleFactor=1.2, minNeighbors=6, minSize=(side, side))
    return np.asarray(found).reshape(-1, 4)


# --------------------------------------------------------------------------- decoding


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def _fit(w: int, h: int, side: int) -> tuple[int, int]:
    scale = min(1.0, side / float(max(w, h)))
    return _even(w * scale), _even(h * scale)


def _plane(frame, idx: int) -> np.ndarray:
    p = frame.planes[idx]
    arr = np.frombuffer(p, np.uint8)
    height = p.height if hasattr(p, "height") else arr.size // p.line_size
    return arr[: height * p.line_size].reshape(height, p.line_size)[:, : p.width]


_PLANAR_YUV = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p", "yuvj440p", "yuv411p", "yuv410p"}


def _thumb(frame, tw: int, th: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Luma (tw x th) and chroma (half size) thumbnails straight from the decoded planes."""
    if frame.format.name not in _PLANAR_YUV:
        frame = frame.reformat(format="yuv420p")
    y = cv2.resize(_plane(frame, 0), (tw, th), interpolation=cv2.INTER_AREA)
    u = cv2.resize(_plane(frame, 1), (max(2, tw // 2), max(2, th // 2)), interpolation=cv2.INTER_NEAREST)
    v = cv2.resize(_plane(frame, 2), (max(2, tw // 2), max(2, th // 2)), interpolation=cv2.INTER_NEAREST)
    return y, u, v


def _to_rgb(frame, w: int, h: int) -> np.ndarray:
    """The frame as RGB, resized to w x h (I420 is converted by OpenCV: much faster than swscale)."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:  # limited range, as OpenCV assumes
        fw, fh = frame.width, frame.height
        i420 = np.concatenate([_plane(frame, 0).reshape(-1), _plane(frame, 1).reshape(-1), _plane(frame, 2).reshape(-1)])
        rgb = cv2.cvtColor(i420.reshape(fh * 3 // 2, fw), cv2.COLOR_YUV2RGB_I420)
        if (fw, fh) != (w, h):
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        return rgb
    return frame.to_ndarray(format="rgb24", width=w, height=h)


class _Decoded:
    def __init__(self) -> None:
        self.samples: dict[int, tuple[float, np.ndarray]] = {}
        self.partners: dict[int, tuple[float, np.ndarray]] = {}
        self.thumbs_t: list[float] = []
        self.thumbs_y: list[np.ndarray] = []
        self.thumbs_u: list[np.ndarray] = []
        self.thumbs_v: list[np.ndarray] = []
        self.last: tuple[float, np.ndarray] | None = None  # latest decoded frame (as RGB), only kept at the end
        self.errors: list[str] = []  # damaged packets skipped while decoding
        self.width = self.height = 0
        self.fps = 0.0
        self.duration = 0.0


MAX_BAD_PACKETS = 25


def _frames(container, stream, out: _Decoded):
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


def _decode(path: Path, n: int, every: float, clip_start: float, clip_seconds: float, motion_gap: float, max_side: int) -> _Decoded:
    import av

    try:
        container = av.open(str(path), mode="r")
    except Exception as exc:  # av raises its own error classes (InvalidDataError, ...)
        raise VideoDecodeError(f"{path}: cannot open as a video ({type(exc).__name__}: {exc})") from exc
    out = _Decoded()
    try:
        if not container.streams.video:
            raise VideoDecodeError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        cc = stream.codec_context
        out.width, out.height = int(cc.width or 0), int(cc.height or 0)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        out.fps = float(rate) if rate else 0.0
        tb = float(stream.time_base) if stream.time_base else 0.0
        start_off = float(stream.start_time * stream.time_base) if (stream.start_time is not None and tb) else 0.0
        if stream.duration is not None and tb:
            out.duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            out.duration = float(container.duration) / 1e6
        fps_guess = out.fps if 1.0 <= out.fps <= 240.0 else 25.0
        tol = 0.5 / fps_guess
        targets = [clip_start + i * every for i in range(n)]
        partner_targets = [t + motion_gap for t in targets]
        end_t = max(clip_start + clip_seconds, partner_targets[-1]) + tol
        thumb_step = 1.0 / THUMB_RATE
        max_frames = int((end_t + 10.0) * fps_guess * 4) + 2000
        deadline = time.monotonic() + DECODE_DEADLINE_S

        if clip_start > 0:
            try:
                if tb:
                    container.seek(int((clip_start + start_off) / tb), stream=stream, backward=True, any_frame=False)
                else:
                    container.seek(int(clip_start * 1e6), backward=True, any_frame=False)
            except Exception as exc:
                raise VideoDecodeError(f"{path}: cannot seek to {clip_start:.2f} s ({type(exc).__name__}: {exc})") from exc

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
                if not jw:
                    fw, fh = frame.width, frame.height
                    out.width, out.height = out.width or fw, out.height or fh
                    jw, jh = _fit(fw, fh, max_side)
                    tw = THUMB_W
                    th = max(8, int(round(THUMB_W * fh / max(1, fw))))
                if t > end_t:
                    break
                rt = t - clip_start
                if rt <= clip_seconds + tol and t - last_thumb >= thumb_step - tol:
                    y, u, v = _thumb(frame, tw, th)
                    out.thumbs_t.append(rt)
                    out.thumbs_y.append(y)
                    out.thumbs_u.append(u)
                    out.thumbs_v.append(v)
                    last_thumb = t
                # the picture on screen at a target time is the latest frame that started
                # by then (a held frame in sparse, variable-frame-rate video) unless the
                # new one is closer
                if (next_s < n and t >= targets[next_s] - tol) or (next_p < n and t >= partner_targets[next_p] - tol):
                    cache: dict[int, tuple[float, np.ndarray]] = {}

                    def pick(target: float) -> tuple[float, np.ndarray]:
                        held = last_frame is not None and t > target + tol and (t - target) > (target - (last_frame[1] + clip_start))
                        key = 0 if held else 1
                        if key not in cache:
                            fr, ft = (last_frame if held else (frame, rt))  # type: ignore[misc]
                            cache[key] = (ft, _to_rgb(fr, jw, jh))
                        return cache[key]

                    while next_s < n and t >= targets[next_s] - tol:
                        out.samples[next_s] = pick(targets[next_s])
                        next_s += 1
                    while next_p < n and t >= partner_targets[next_p] - tol:
                        out.partners[next_p] = pick(partner_targets[next_p])
                        next_p += 1
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
            if not out.errors:
                rgb = None
                while next_s < n and targets[next_s] - clip_start <= held_until - tol:
                    rgb = rgb if rgb is not None else _to_rgb(frame, jw, jh)
                    out.samples[next_s] = (rt, rgb)
                    next_s += 1
                while next_p < n and partner_targets[next_p] - clip_start <= held_until - tol:
                    rgb = rgb if rgb is not None else _to_rgb(frame, jw, jh)
                    out.partners[next_p] = (rt, rgb)
                    next_p += 1
            if not out.partners.get(len(out.samples) - 1) and out.samples:
                out.last = (rt, _to_rgb(frame, jw, jh))
        if count == 0:
            detail = f" ({out.errors[-1]})" if out.errors else ""
            raise VideoDecodeError(f"{path}: no decodable video frames{detail}")
    finally:
        container.close()
    return out


# --------------------------------------------------------------------------- per-frame measurements


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
    # teal: the darker blue-greens; brown: dark or greyish oranges/reds
    hue_names = np.where((h >= 160) & (h < 200) & (v < 0.62), 7, hue_names).astype(np.int8)
    hue_names = np.where((h >= 150) & (h < 165) & (s > 0.5), 7, hue_names).astype(np.int8)
    brown = (h >= 8) & (h < 48) & ((v < 0.58) | ((s < 0.45) & (v < 0.75)))
    hue_names = np.where(brown, 12, hue_names).astype(np.int8)
    pinkish = ((h < 12) | (h >= 340)) & (s < 0.5) & (v > 0.75)
    hue_names = np.where(pinkish, 11, hue_names).astype(np.int8)
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


def _colourfulness(rgb: np.ndarray) -> float:
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


def _layering(gray: np.ndarray) -> float:
    g = cv2.resize(gray, (64, max(4, int(64 * gray.shape[0] / max(1, gray.shape[1])))), interpolation=cv2.INTER_AREA).astype(np.float32)
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
    kw = max(5, w // 40)
    joined = cv2.morphologyEx(strokes, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (kw, 3)))
    joined = cv2.morphologyEx(joined, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (kw, 3)))
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


def _colour_hist(rgb: np.ndarray) -> np.ndarray:
    """Normalised hue x saturation x value histogram (12 x 4 x 4 bins)."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    h = cv2.calcHist([hsv], [0, 1, 2], None, [12, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
    return h / max(1.0, float(h.sum()))


def _motion(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute luma change above the compression-noise floor (blurred, 160 px wide)."""
    d = cv2.absdiff(a, b).astype(np.float32)
    return float(np.maximum(d - NOISE_FLOOR, 0.0).mean())


def _small_gray(rgb: np.ndarray, width: int = 160) -> np.ndarray:
    h = max(4, int(round(rgb.shape[0] * width / max(1, rgb.shape[1]))))
    g = cv2.cvtColor(cv2.resize(rgb, (width, h), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    return cv2.GaussianBlur(g, (3, 3), 0)


def _global_motion(a: np.ndarray, b: np.ndarray, raw: float, gap: float) -> tuple[float, float, float, float]:
    """(zoom/s, pan_x/s, pan_y/s, residual) of b relative to a from tracked corners."""
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
    residual = _motion(warped[my : h - my, mx : w - mx], b[my : h - my, mx : w - mx])
    return (scale - 1.0) / gap, -dx / w / gap, -dy / h / gap, residual


def _analysis_size(rgb: np.ndarray) -> np.ndarray:
    h0, w0 = rgb.shape[:2]
    if max(h0, w0) > ANALYSIS_SIDE:
        aw, ah = _fit(w0, h0, ANALYSIS_SIDE)
        rgb = cv2.resize(rgb, (aw, ah), interpolation=cv2.INTER_AREA)
    return rgb


def _frame_stats(rgb: np.ndarray, t: float, later: np.ndarray | None = None) -> tuple[FrameStats, np.ndarray]:
    """Everything measured on one frame except motion (filled in later); ``later`` is the
    frame a moment after it in the same shot, if any (used to tell overlays from texture)."""
    rgb = _analysis_size(rgb)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    later_gray = cv2.cvtColor(_analysis_size(later), cv2.COLOR_RGB2GRAY) if later is not None else None
    h, w = gray.shape
    top, bottom = _letterbox(gray)
    pic = rgb[top : h - bottom] if (top or bottom) else rgb
    pgray = gray[top : h - bottom] if (top or bottom) else gray
    hsv = cv2.cvtColor(pic, cv2.COLOR_RGB2HSV_FULL)
    faces = _detect_faces(gray)
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


# --------------------------------------------------------------------------- dense (thumbnail) measurements


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
        if later and min(float(np.abs(z[j] - z[i - 1]).mean()) + float(np.abs(uv[j] - uv[i - 1]).mean()) / 20.0 for j in later) < 0.6 * d:
            continue  # the picture came back: a flash, not a cut
        if cuts and i - cuts[-1] < 2:
            continue
        cuts.append(i)
    return cuts


def _dense(dec: _Decoded) -> dict:
    """Cuts, flicker, shake and motion rhythm from the thumbnail series."""
    t = np.asarray(dec.thumbs_t, np.float64)
    k = t.size
    res = {"cuts": [], "flicker": 0.0, "shake": 0.0, "periodicity": 0.0, "bpm": None}
    if k < 3:
        return res
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
    chroma[1:] = (np.abs(np.diff(us, axis=0)).reshape(k - 1, -1).mean(1) + np.abs(np.diff(vs, axis=0)).reshape(k - 1, -1).mean(1)) / 40.0
    ldiff = np.zeros(k, np.float32)
    ldiff[1:] = np.abs(np.diff(ys, axis=0)).reshape(k - 1, -1).mean(1)
    # global shift between consecutive thumbnails (camera pan/shake), and the change left
    # after compensating it: a panning or shaking camera is not a sequence of cuts
    win = cv2.createHanningWindow((ys.shape[2], ys.shape[1]), cv2.CV_32F)
    shifts = np.zeros((k, 2), np.float32)
    explained = np.zeros(k, bool)
    b = 3
    zd = np.abs(np.diff(z, axis=0))
    plain_all = np.zeros(k, np.float32)
    plain_all[1:] = zd.reshape(k - 1, -1).mean(1)
    plain_z = plain_all.copy()
    plain_inner = np.zeros(k, np.float32)
    plain_inner[1:] = zd[:, b:-b, b:-b].reshape(k - 1, -1).mean(1)
    still = np.zeros(k, bool)
    still[1:] = ldiff[1:] < 0.05  # identical frames: nothing to measure
    hh, ww = ys.shape[1], ys.shape[2]
    for i in range(1, k):
        if still[i]:
            continue
        (dx, dy), resp = cv2.phaseCorrelate(ys[i - 1], ys[i], win)
        if resp > 0.1 and abs(dx) < ww / 6 and abs(dy) < hh / 6 and (abs(dx) > 0.05 or abs(dy) > 0.05):
            moved = cv2.warpAffine(z[i - 1], np.float32([[1, 0, dx], [0, 1, dy]]), (ww, hh), borderMode=cv2.BORDER_REPLICATE)
            comp = float(np.abs(z[i] - moved)[b:-b, b:-b].mean())
            if comp < 0.7 * plain_inner[i]:
                explained[i] = True
                shifts[i] = (dx, dy)
                plain_all[i] = min(plain_all[i], comp * plain_all[i] / max(float(plain_inner[i]), 1e-6))
    sdiff = plain_all + chroma
    uv = np.concatenate([us.reshape(k, -1), vs.reshape(k, -1)], axis=1)
    cuts = _detect_cuts(sdiff, _grid_diffs(ys, us, vs), z, uv, per_sec)
    res["cuts"] = [float(t[i]) for i in cuts]
    in_shot = np.ones(k, bool)
    in_shot[0] = False
    in_shot[cuts] = False
    # flicker: high-frequency brightness changes within shots
    if in_shot.sum() >= 4:
        hp = mu - _moving_average(mu, per_sec)
        seg_ok = in_shot.copy()
        for c in cuts:  # the moving average straddles cuts: ignore half a second around them
            seg_ok[max(0, c - per_sec // 2) : c + per_sec // 2 + 1] = False
        if seg_ok.sum() >= 4:
            res["flicker"] = round(float(np.std(hp[seg_ok])), 3)
    # shake: jitter (high-frequency part) of the global shift, where a shift explains the change
    if in_shot.sum() >= 6:
        sh = np.where((in_shot & explained)[:, None], shifts, 0.0)
        jit = sh - np.stack([_moving_average(sh[:, 0], per_sec), _moving_average(sh[:, 1], per_sec)], axis=1)
        mag = np.sqrt((jit[in_shot] ** 2).sum(1))
        res["shake"] = round(float(np.sqrt(np.mean(mag**2))) / ys.shape[2] * 100.0, 3)
    # rhythm: periodic component of the motion energy (lag 0.25 s .. 1.6 s); the energy is
    # the brightness-normalised change, so a pulsing light alone is not rhythmic motion
    energy = plain_z.astype(np.float64).copy()
    if in_shot.sum() >= per_sec * 4:
        med = float(np.median(energy[in_shot]))
        energy[~in_shot] = med
        x = energy - _moving_average(energy, per_sec * 2)
        x = x - x.mean()
        denom = float((x * x).sum())
        lo_lag, hi_lag = max(2, int(round(0.25 / dt))), min(k // 3 - 1, int(round(1.6 / dt)))
        if denom > 1e-6 and hi_lag > lo_lag:
            ac = np.array([float((x[:-lag] * x[lag:]).sum()) / denom for lag in range(lo_lag - 1, hi_lag + 2)])
            # the strongest interior local maximum (a peak at the search edge is no period)
            peaks = [j for j in range(1, ac.size - 1) if ac[j] >= ac[j - 1] and ac[j] >= ac[j + 1]]
            if peaks:
                j = max(peaks, key=lambda q: ac[q])
                peak = float(ac[j])
                lag = float(lo_lag - 1 + j)
                a_, b_, c_ = ac[j - 1], ac[j], ac[j + 1]
                den = a_ - 2 * b_ + c_
                if abs(den) > 1e-9:
                    lag += 0.5 * (a_ - c_) / den
                res["periodicity"] = round(max(0.0, peak), 3)
                res["bpm"] = round(60.0 / (lag * dt), 1) if peak > 0.2 else None
    return res


# --------------------------------------------------------------------------- entry points


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
    sampled frames accepted; fewer raises ``VideoDecodeError`` ("too short").
    """
    if every <= 0 or clip_seconds <= 0 or motion_gap <= 0:
        raise ValueError("every, clip_seconds and motion_gap must be positive")
    path = Path(path)
    frames_dir = Path(frames_dir)
    n = max(1, int(math.floor(clip_seconds / every + 1e-6)))
    need = n if min_frames is None else max(1, min(int(min_frames), n))
    if not path.exists():
        raise VideoDecodeError(f"{path}: no such video file")
    if not path.is_file():
        raise VideoDecodeError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file")

    dec = _decode(path, n, every, clip_start, clip_seconds, motion_gap, max_side)
    got = len(dec.samples)
    if got < need:
        have = dec.thumbs_t[-1] if dec.thumbs_t else 0.0
        damaged = f"; decoding stopped on damaged data ({dec.errors[-1]})" if dec.errors else ""
        raise VideoDecodeError(
            f"{path}: too short: {got} of {n} frames (every {every:g} s from {clip_start:g} s); "
            f"decodable video ends about {clip_start + have:.1f} s, need {need} frames{damaged}"
        )
    dense = _dense(dec)
    cuts = dense["cuts"]

    frames_dir.mkdir(parents=True, exist_ok=True)
    for old in frames_dir.glob("[0-9][0-9].jpg"):
        if int(old.stem) >= got:
            old.unlink()

    frames: list[FrameStats] = []
    pair_motion: list[float] = []
    pair_rigid: list[bool] = []
    residuals: list[float] = []
    prev_t = None
    prev_hist = None
    gradual = 0
    for i in range(got):
        t, rgb = dec.samples[i]  # t: when the shown frame started (clip time)
        cv2.imwrite(str(frames_dir / f"{i:02d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        partner = dec.partners.get(i)
        if partner is None and dec.last is not None and i == got - 1 and dec.last[0] > t + 1e-6:
            partner = dec.last
        same_shot = partner is not None and not any(t < c <= partner[0] + 1e-6 for c in cuts)
        stats, work = _frame_stats(rgb, i * every, partner[1] if same_shot and partner is not None else None)
        hist = _colour_hist(work)
        hard = prev_t is not None and any(prev_t < c <= t + 1e-6 for c in cuts)
        # a big change of the colour distribution since the previous sample with no hard cut
        # in between: a dissolve or a cut the frame-to-frame detector missed
        soft = prev_hist is not None and not hard and 0.5 * float(np.abs(hist - prev_hist).sum()) >= GRADUAL_HIST
        gradual += int(soft)
        prev_hist = hist
        upd: dict = {"cut_before": bool(hard or soft)}
        if partner is not None and partner[0] <= t + 1e-6:
            # the same frame is still on screen half a second later: nothing moved
            upd.update(motion=0.0, motion_in_shot=True)
            pair_motion.append(0.0)
            residuals.append(0.0)
            pair_rigid.append(False)
        elif partner is not None and partner[0] > t:
            pt, prgb = partner
            a = _small_gray(work)
            b = _small_gray(prgb)
            raw = _motion(a, b)
            gap = pt - t
            in_shot = not any(t < c <= pt + 1e-6 for c in cuts)
            zoom, pan_x, pan_y, resid = _global_motion(a, b, raw, gap) if in_shot else (0.0, 0.0, 0.0, raw)
            upd.update(motion=round(raw, 3), motion_in_shot=in_shot, zoom=round(zoom, 4), pan_x=round(pan_x, 4), pan_y=round(pan_y, 4), residual=round(resid, 3))
            if in_shot:
                pair_motion.append(raw)
                residuals.append(resid)
                moved = abs(zoom) * gap > 0.004 or math.hypot(pan_x * gap * a.shape[1], pan_y * gap * a.shape[0]) > 0.3
                pair_rigid.append(raw >= 0.4 and moved and resid <= 0.35 * raw)
        else:
            upd["motion_in_shot"] = False
        frames.append(stats.model_copy(update=upd))
        prev_t = t

    if pair_motion:
        static_score = float(np.median(pair_motion))
    else:  # every pair straddles a cut: judge by the change across them
        static_score = float(np.median([f.motion for f in frames])) if frames else 0.0
    moving_pairs = [r for r, m in zip(pair_rigid, pair_motion) if m >= 0.4]
    rigid_share = float(np.mean(moving_pairs)) if moving_pairs else 0.0
    med_resid = float(np.median(residuals)) if residuals else 0.0
    zoom_pan = bool(len(moving_pairs) >= 3 and rigid_share >= 0.6 and med_resid < 0.6)
    span = max(1e-6, min(clip_seconds, (dec.thumbs_t[-1] if dec.thumbs_t else clip_seconds)))
    letterboxed = [f.letterbox for f in frames]

    def med(values) -> float:
        return float(np.median(values)) if len(values) else 0.0

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
        brightness=round(med([f.brightness for f in frames]), 2),
        saturation=round(med([f.saturation for f in frames]), 4),
        colourfulness=round(med([f.colourfulness for f in frames]), 2),
        flat_colour=round(med([f.flat_colour for f in frames]), 4),
        layering=round(med([f.layering for f in frames]), 4),
        face_share=round(sum(1 for f in frames if f.faces) / len(frames), 3),
        text_share=round(sum(1 for f in frames if f.text_overlay) / len(frames), 3),
        shake=dense["shake"],
        flicker=dense["flicker"],
        motion_periodicity=dense["periodicity"],
        motion_bpm=dense["bpm"],
    )


def static_decision(visual: VisualStats, threshold: float = 1.0) -> tuple[bool, str]:
    """(keep, reason). Drops a single still and slideshows of stills; keeps moving video and
    slow zoom/pan (Ken Burns) montages."""
    score = visual.static_score
    shots = visual.shot_count
    if score >= threshold:
        if visual.zoom_pan:
            return True, f"kept: slow zoom/pan over still images (within-shot motion {score:.2f} >= {threshold:g}, {shots} shots)"
        return True, f"kept: moving video (within-shot motion {score:.2f} >= {threshold:g}, {shots} shots)"
    if visual.zoom_pan:
        return True, f"kept: zoom/pan montage detected although within-shot motion {score:.2f} < {threshold:g}"
    if shots <= 1:
        return False, f"dropped: a single still image (within-shot motion {score:.2f} < {threshold:g})"
    return False, f"dropped: slideshow of {shots} still images (within-shot motion {score:.2f} < {threshold:g})"
