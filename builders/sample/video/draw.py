"""Drawing primitives the MV styles share: a frontal face (drawn so that OpenCV's Haar
cascade can find it), a posed person silhouette, parallax landscape layers, outlined text,
the camera's zoom/pan window and the beat envelope that makes lights pulse."""

from __future__ import annotations

import math

import cv2
import numpy as np

from builders.sample.video.canvas import _col, _shade, _u8


def _face(img: np.ndarray, cx: int, cy: int, s: int, skin=(205, 160, 130),
          hair=(40, 30, 25), light: float = 1.0) -> None:
    """A frontal face about ``s`` pixels tall (eyes, brows, nose shadow, mouth, hair)."""
    skin = _shade(skin, light)
    hair = _shade(hair, max(0.6, light))
    w, h = int(s * 0.78), int(s)
    cv2.ellipse(img, (cx, cy - int(s * 0.12)), (int(w * 0.58), int(h * 0.55)), 0, 180, 360, _col(hair), -1, cv2.LINE_AA)
    cv2.ellipse(img, (cx, cy + int(h * 0.55)), (int(w * 0.22), int(h * 0.25)),
                0, 0, 360, _col(_shade(skin, 0.8)), -1, cv2.LINE_AA)
    cv2.ellipse(img, (cx, cy), (w // 2, h // 2), 0, 0, 360, _col(skin), -1, cv2.LINE_AA)
    ey, ex = cy - int(h * 0.08), int(w * 0.2)
    dark = _col(_shade(skin, 0.3))
    white = _col(_shade((235, 235, 235), light))
    for sx in (-1, 1):
        cv2.ellipse(img, (cx + sx * ex, ey - int(h * 0.09)),
                    (int(w * 0.13), max(1, int(h * 0.025))), 0, 0, 360, _col(hair), -1, cv2.LINE_AA)
        cv2.ellipse(img, (cx + sx * ex, ey), (max(2, int(w * 0.11)), max(1, int(h * 0.05))),
                    0, 0, 360, white, -1, cv2.LINE_AA)
        cv2.circle(img, (cx + sx * ex, ey), max(1, int(h * 0.04)), (30, 20, 15), -1, cv2.LINE_AA)
    cv2.line(img, (cx, ey + int(h * 0.04)), (cx + int(w * 0.03), cy + int(h * 0.12)),
             dark, max(1, int(s * 0.02)), cv2.LINE_AA)
    cv2.ellipse(img, (cx, cy + int(h * 0.26)), (max(2, int(w * 0.17)), max(1, int(h * 0.04))),
                0, 0, 360, _col(_shade((150, 50, 50), light)), -1, cv2.LINE_AA)


def _figure(img: np.ndarray, x: float, y: float, s: float, colour,
            pose: tuple[float, ...] = (0, 0, 0, 0), thick: float = 0.09, head=None) -> None:
    """A person silhouette: hip at (x, y), height ~``s`` pixels; pose = arm/leg swing angles."""
    la, ra, ll, rl = pose
    c = _col(colour)
    t = max(2, int(s * thick))
    hip = (int(x), int(y))
    neck = (int(x), int(y - s * 0.42))
    cv2.line(img, hip, neck, c, int(t * 1.6), cv2.LINE_AA)
    cv2.circle(img, (int(x), int(y - s * 0.55)), max(2, int(s * 0.1)),
               _col(head if head is not None else colour), -1, cv2.LINE_AA)
    arm = s * 0.36
    for sign, ang in ((-1, la), (1, ra)):
        a = math.radians(200 if sign < 0 else -20) + ang * sign
        ex = int(neck[0] + sign * abs(math.cos(a)) * arm * 0.5)
        ey = int(neck[1] + math.sin(a) * arm * 0.5)
        hx = int(ex + math.cos(a + sign * 0.6) * arm * 0.55 * sign)
        hy = int(ey + math.sin(a + sign * 0.6) * arm * 0.55)
        cv2.line(img, neck, (ex, ey), c, t, cv2.LINE_AA)
        cv2.line(img, (ex, ey), (hx, hy), c, t, cv2.LINE_AA)
    leg = s * 0.5
    for sign, ang in ((-1, ll), (1, rl)):
        fx = int(x + sign * leg * 0.25 + math.sin(ang) * leg * 0.5)
        fy = int(y + leg * math.cos(ang * 0.5) * 0.95)
        kx = int((hip[0] + fx) / 2 + sign * s * 0.03)
        ky = int((hip[1] + fy) / 2)
        cv2.line(img, hip, (kx, ky), c, int(t * 1.2), cv2.LINE_AA)
        cv2.line(img, (kx, ky), (fx, fy), c, int(t * 1.1), cv2.LINE_AA)


def _ridge(rng: np.random.Generator, n: int, base: float, amp: float, waves: int = 4) -> np.ndarray:
    x = np.arange(n, dtype=np.float32) / n
    y = np.full(n, base, np.float32)
    for k in range(1, waves + 1):
        y += amp / k * np.sin(2 * np.pi * (k * float(rng.integers(1, 4)) * x + float(rng.random())))
    return y


def _paste_layers(frame: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]], offsets: list[int]) -> None:
    """Composite wide (texture strip, mask) layers, each scrolled by its own offset (parallax).

    Strips carry a copy of their first frame-width of columns at the end, so a scrolled
    window is always one contiguous slice (wrapping around seamlessly).
    """
    w = frame.shape[1]
    for (strip, mask), off in zip(layers, offsets):
        o = off % (strip.shape[1] - w)
        np.copyto(frame, strip[:, o : o + w], where=mask[:, o : o + w, None])


def _layer_strip(rng: np.random.Generator, heights: np.ndarray, h: int, frame_w: int,
                 colour, texture: float, trees: bool) -> tuple[np.ndarray, np.ndarray]:
    """A textured landscape layer (grass/rock noise, optional tree line) below a ridge line."""
    n = heights.shape[0]
    yy = np.arange(h, dtype=np.float32)[:, None]
    mask = yy >= heights[None, :]
    noise = cv2.GaussianBlur(rng.normal(0.0, texture, (h, n)).astype(np.float32), (0, 0), 1.2)
    strip = np.asarray(colour, np.float32)[None, None, :] * (1.0 + noise[..., None] / 100.0)
    strip = strip * (1.0 - 0.25 * np.clip((yy - heights[None, :]) / max(1.0, h * 0.4), 0, 1))[..., None]
    if trees:
        dark = _col(_shade(colour, 0.55))
        for x in range(0, n, 5):
            if rng.random() < 0.5:
                top = int(heights[x])
                th = int(rng.uniform(4, 10))
                pts = np.array([[x - 3, top + 2], [x, top - th], [x + 3, top + 2]], np.int32)
                cv2.fillConvexPoly(strip, pts, dark)
                tree = np.zeros((th + 6, 8), np.uint8)
                cv2.fillConvexPoly(tree, pts - np.array([x - 3, top - th - 1], np.int32), 1)
                y0 = top - th - 1
                ys, xs = np.nonzero(tree)
                ok = (ys + y0 >= 0) & (ys + y0 < h) & (xs + x - 3 >= 0) & (xs + x - 3 < n)
                mask[ys[ok] + y0, xs[ok] + x - 3] = True
    strip = _u8(strip)
    return np.concatenate([strip, strip[:, :frame_w]], axis=1), np.concatenate([mask, mask[:, :frame_w]], axis=1)


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float,
          colour=(255, 255, 255), thick: int = 2, outline=(10, 10, 10)) -> None:
    font = cv2.FONT_HERSHEY_DUPLEX
    cv2.putText(img, text, org, font, scale, outline, thick + 3, cv2.LINE_AA)
    cv2.putText(img, text, org, font, scale, _col(colour), thick, cv2.LINE_AA)


def _text_size(text: str, scale: float, thick: int = 2) -> tuple[int, int]:
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, scale, thick)
    return tw, th


def _warp(img: np.ndarray, w: int, h: int, zoom: float, cx: float, cy: float) -> np.ndarray:
    """Crop a window of ``1/zoom`` of the source around (cx, cy) (0..1) and scale it to w x h."""
    sh, sw = img.shape[:2]
    cw, ch = sw / zoom, sh / zoom
    x0 = min(max(cx * sw - cw / 2, 0.0), sw - cw)
    y0 = min(max(cy * sh - ch / 2, 0.0), sh - ch)
    sx, sy = w / cw, h / ch
    m = np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy]], np.float32)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _beat_env(t: float, beat: float, sharp: float = 5.0) -> float:
    phase = (t / beat) % 1.0
    return math.exp(-phase * sharp)
