"""Synthetic music videos for the embedded sample corpus.

``render_video(spec, path)`` draws a short, small H.264 MP4 whose look follows
``spec.mv_style`` (one of the ten MV types), ``spec.video_kind`` (moving video, one still,
a slideshow of stills, or a slow zoom/pan montage of stills) and ``spec.palette``, and returns
the ground truth the builder's tests compare against. Everything is procedural (numpy +
OpenCV drawing), deterministic in ``spec.seed``, and fast: a 30 s clip at 320x180, 12 fps
encodes in well under two seconds.

Styles (what a viewer would see):

- Lyric Video: lyric lines sliding in over a drifting colour gradient with soft bokeh.
- Live Performance: dark stage, sweeping coloured beams flashing on the beat, band and crowd
  silhouettes, fast cuts between wide, close-up, crowd and light-rig shots.
- Dance Performance: a troupe of dancers moving in sync with ``spec.tempo`` in a lit studio,
  cuts on bar lines between wide and medium framings.
- Cinematic Drama: dark, letterboxed (2.35:1), slow push-ins and pans, rain, few cuts, a
  face in close-up.
- Nature/Scenic: sky, sun, clouds, parallax hill ridges and shimmering water, slow pans.
- Animation: flat saturated cartoon shapes with outlines bouncing over flat backgrounds.
- Artistic/Abstract: swirling plasma, spirals and kaleidoscopes in the palette's colours.
- Story Narrative: street, room and close-up scenes with a drawn face, cut every few seconds.
- Behind-the-Scenes: desaturated, grainy, handheld-shake studio footage.
- video_kind "still" / "slideshow" / "ken_burns": procedurally drawn photographs, shown as
  one still, as hard-cut stills, or with a slow zoom/pan (Ken Burns).

Faces are drawn only in some shots, and ``has_face`` is True only where the builder's face
detector (``builders.video.faces``, OpenCV's bundled frontal-face Haar cascade) actually
found a face on rendered frames.
"""

from __future__ import annotations

import colorsys
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from builders.sample.specs import ClipSpec
from builders.video.faces import detect_faces
from mv4all.schema import CLIP_SECONDS

WIDTH, HEIGHT, FPS = 320, 180, 12

PALETTE_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 40),
    "orange": (245, 135, 25),
    "yellow": (240, 205, 40),
    "green": (45, 165, 70),
    "teal": (20, 140, 140),
    "cyan": (35, 205, 230),
    "blue": (40, 85, 215),
    "purple": (125, 50, 195),
    "pink": (240, 95, 170),
    "brown": (125, 80, 45),
    "gray": (128, 128, 128),
    "white": (240, 240, 236),
    "black": (15, 15, 15),
}

_LYRICS = {
    "en": [
        "we were {a} in the {n}",
        "hold me through the {n}",
        "every {n} feels like {t}",
        "i remember {t}",
        "dancing on the edge of {t}",
        "you and me and the {n}",
        "call my name in the {n}",
        "{a} hearts under {n} lights",
        "never let the {t} go",
        "oh oh oh {t}",
    ],
    "es": [
        "bajo la luz del {n}",
        "mi corazon es tu {n}",
        "siempre {t} contigo",
        "baila conmigo esta {n}",
        "oh oh {t} del mar",
        "te busco en la {n}",
    ],
}
_NOUNS = {"en": ["night", "rain", "city", "summer", "fire", "ocean", "sky", "dark"], "es": ["noche", "luna", "playa", "faro"]}
_ADJS = ["wild", "young", "golden", "lonely", "electric", "broken", "neon"]


# --------------------------------------------------------------------------- colour helpers


def _rgb(name: str) -> np.ndarray:
    return np.array(PALETTE_RGB.get(name, PALETTE_RGB["gray"]), np.float32)


def _hue_shift(rgb, degrees: float, sat: float | None = None, val: float | None = None) -> np.ndarray:
    r, g, b = (float(c) / 255.0 for c in rgb)
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    h = (h + degrees / 360.0) % 1.0
    if sat is not None:
        s = sat
    if val is not None:
        v = val
    return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32) * 255.0


def _shade(rgb, f: float) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) * f, 0, 255)


def _mix(a, b, t: float) -> np.ndarray:
    return np.asarray(a, np.float32) * (1 - t) + np.asarray(b, np.float32) * t


def _col(rgb) -> tuple[int, int, int]:
    return tuple(int(round(float(c))) for c in np.clip(rgb, 0, 255))  # type: ignore[return-value]


def _u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- canvas


@dataclass
class _Ctx:
    w: int
    h: int
    fps: int
    spec: ClipSpec
    rng: np.random.Generator
    base: np.ndarray  # palette colour (float RGB)
    beat: float  # seconds per beat
    _grid: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Normalised coordinates: y, x in 0..1 (float32, H x W)."""
        if self._grid is None:
            y, x = np.mgrid[0 : self.h, 0 : self.w].astype(np.float32)
            self._grid = (y / self.h, x / self.w)
        return self._grid

    def px(self, fx: float) -> int:
        return int(round(fx * self.w))

    def py(self, fy: float) -> int:
        return int(round(fy * self.h))

    def vgrad(self, top, bottom, h: int | None = None, w: int | None = None) -> np.ndarray:
        h = h or self.h
        w = w or self.w
        ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        col = np.asarray(top, np.float32)[None, None, :] * (1 - ramp) + np.asarray(bottom, np.float32)[None, None, :] * ramp
        return np.repeat(col, w, axis=1)


@dataclass
class _Shot:
    start: float  # seconds
    end: float
    draw: Callable[[float, float], np.ndarray]  # (t in shot, t in clip) -> uint8 RGB frame
    face: bool = False  # a face is drawn somewhere in this shot
    text: bool = False
    label: str = ""


@dataclass
class _Plan:
    shots: list[_Shot]
    letterbox: bool = False
    notes: dict = field(default_factory=dict)


def _segments(rng: np.random.Generator, duration: float, lo: float, hi: float, snap: float | None = None) -> list[tuple[float, float]]:
    """Random shot boundaries with lengths in [lo, hi] (optionally snapped to a beat grid)."""
    out: list[tuple[float, float]] = []
    t = 0.0
    while t < duration - 1e-6:
        length = float(rng.uniform(lo, hi))
        if snap:
            length = max(snap, round(length / snap) * snap)
        end = min(duration, t + length)
        if duration - end < lo * 0.5:
            end = duration
        out.append((t, end))
        t = end
    return out


# --------------------------------------------------------------------------- drawing primitives


def _face(img: np.ndarray, cx: int, cy: int, s: int, skin=(205, 160, 130), hair=(40, 30, 25), light: float = 1.0) -> None:
    """A frontal face about ``s`` pixels tall (eyes, brows, nose shadow, mouth, hair)."""
    skin = _shade(skin, light)
    hair = _shade(hair, max(0.6, light))
    w, h = int(s * 0.78), int(s)
    cv2.ellipse(img, (cx, cy - int(s * 0.12)), (int(w * 0.58), int(h * 0.55)), 0, 180, 360, _col(hair), -1, cv2.LINE_AA)
    cv2.ellipse(img, (cx, cy + int(h * 0.55)), (int(w * 0.22), int(h * 0.25)), 0, 0, 360, _col(_shade(skin, 0.8)), -1, cv2.LINE_AA)
    cv2.ellipse(img, (cx, cy), (w // 2, h // 2), 0, 0, 360, _col(skin), -1, cv2.LINE_AA)
    ey, ex = cy - int(h * 0.08), int(w * 0.2)
    dark = _col(_shade(skin, 0.3))
    white = _col(_shade((235, 235, 235), light))
    for sx in (-1, 1):
        cv2.ellipse(img, (cx + sx * ex, ey - int(h * 0.09)), (int(w * 0.13), max(1, int(h * 0.025))), 0, 0, 360, _col(hair), -1, cv2.LINE_AA)
        cv2.ellipse(img, (cx + sx * ex, ey), (max(2, int(w * 0.11)), max(1, int(h * 0.05))), 0, 0, 360, white, -1, cv2.LINE_AA)
        cv2.circle(img, (cx + sx * ex, ey), max(1, int(h * 0.04)), (30, 20, 15), -1, cv2.LINE_AA)
    cv2.line(img, (cx, ey + int(h * 0.04)), (cx + int(w * 0.03), cy + int(h * 0.12)), dark, max(1, int(s * 0.02)), cv2.LINE_AA)
    cv2.ellipse(img, (cx, cy + int(h * 0.26)), (max(2, int(w * 0.17)), max(1, int(h * 0.04))), 0, 0, 360, _col(_shade((150, 50, 50), light)), -1, cv2.LINE_AA)


def _figure(img: np.ndarray, x: float, y: float, s: float, colour, pose: tuple[float, ...] = (0, 0, 0, 0), thick: float = 0.09, head=None) -> None:
    """A person silhouette: hip at (x, y), height ~``s`` pixels; pose = arm/leg swing angles."""
    la, ra, ll, rl = pose
    c = _col(colour)
    t = max(2, int(s * thick))
    hip = (int(x), int(y))
    neck = (int(x), int(y - s * 0.42))
    cv2.line(img, hip, neck, c, int(t * 1.6), cv2.LINE_AA)
    cv2.circle(img, (int(x), int(y - s * 0.55)), max(2, int(s * 0.1)), _col(head if head is not None else colour), -1, cv2.LINE_AA)
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


def _layer_strip(rng: np.random.Generator, heights: np.ndarray, h: int, frame_w: int, colour, texture: float, trees: bool) -> tuple[np.ndarray, np.ndarray]:
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


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, colour=(255, 255, 255), thick: int = 2, outline=(10, 10, 10)) -> None:
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


# --------------------------------------------------------------------------- photographs (stills, slideshows, Ken Burns)


def _photo(ctx: _Ctx, kind: str, tint, w: int, h: int, rng: np.random.Generator, face: bool = False) -> np.ndarray:
    """A procedurally drawn 'photograph' (textured, with grain baked in) of size w x h."""
    tint = np.asarray(tint, np.float32)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    img: np.ndarray
    if kind == "sunset":
        sky = ctx.vgrad(_mix(tint, (255, 230, 160), 0.4), _mix(tint, (120, 40, 80), 0.5), h, w)
        img = sky.copy()
        cv2.circle(img, (int(w * rng.uniform(0.3, 0.7)), int(h * 0.55)), int(h * 0.12), _col(_mix(tint, (255, 240, 200), 0.7)), -1, cv2.LINE_AA)
        sea = (np.arange(h)[:, None] >= int(h * 0.62)) & np.ones((1, w), bool)
        img[sea] = _shade(_mix(tint, (30, 30, 80), 0.5), 0.8)
        for _ in range(40):
            yy = int(h * rng.uniform(0.63, 1.0))
            xx = int(w * rng.uniform(0, 1))
            cv2.line(img, (xx, yy), (xx + int(w * rng.uniform(0.02, 0.1)), yy), _col(_mix(tint, (255, 230, 180), 0.5)), 1)
    elif kind == "portrait":
        img = ctx.vgrad(_shade(tint, 0.7), _shade(tint, 0.35), h, w)
        fs = int(h * 0.5)
        _figure(img, w * 0.5, h * 1.05, h * 1.1, _shade(tint, 0.25), thick=0.2)
        if face:
            _face(img, int(w * 0.5), int(h * 0.42), fs)
    elif kind == "city":
        img = ctx.vgrad(_mix(tint, (20, 20, 50), 0.6), _mix(tint, (90, 60, 60), 0.4), h, w)
        x = 0
        while x < w:
            bw = int(w * rng.uniform(0.06, 0.14))
            bh = int(h * rng.uniform(0.3, 0.8))
            cv2.rectangle(img, (x, h - bh), (x + bw, h), _col(_shade(tint, rng.uniform(0.15, 0.35))), -1)
            for wy in range(h - bh + 6, h - 4, 9):
                for wx in range(x + 3, x + bw - 4, 7):
                    if rng.random() < 0.45:
                        cv2.rectangle(img, (wx, wy), (wx + 3, wy + 4), _col(_mix(tint, (255, 220, 120), 0.7)), -1)
            x += bw + int(rng.integers(0, 4))
    elif kind == "flowers":
        img = ctx.vgrad(_mix(tint, (150, 200, 120), 0.5), _mix(tint, (40, 90, 40), 0.6), h, w)
        for _ in range(70):
            cx, cy = int(w * rng.random()), int(h * (0.3 + 0.7 * rng.random()))
            r = int(h * rng.uniform(0.02, 0.06))
            cv2.circle(img, (cx, cy), r, _col(_hue_shift(tint, rng.uniform(-40, 40), 0.8, 0.95)), -1, cv2.LINE_AA)
            cv2.circle(img, (cx, cy), max(1, r // 3), (250, 220, 90), -1, cv2.LINE_AA)
    elif kind == "room":
        img = ctx.vgrad(_shade(tint, 0.75), _shade(tint, 0.45), h, w)
        cv2.rectangle(img, (int(w * 0.55), int(h * 0.15)), (int(w * 0.85), int(h * 0.55)), _col(_mix(tint, (230, 235, 240), 0.7)), -1)
        cv2.line(img, (int(w * 0.70), int(h * 0.15)), (int(w * 0.70), int(h * 0.55)), _col(_shade(tint, 0.3)), 3)
        cv2.rectangle(img, (0, int(h * 0.75)), (w, h), _col(_shade(tint, 0.3)), -1)
        cv2.rectangle(img, (int(w * 0.1), int(h * 0.5)), (int(w * 0.4), int(h * 0.8)), _col(_shade(tint, 0.5)), -1)
        cv2.circle(img, (int(w * 0.25), int(h * 0.35)), int(h * 0.07), (250, 230, 170), -1, cv2.LINE_AA)
    elif kind == "piano":
        img = np.full((h, w, 3), 0, np.float32) + _mix(tint, (250, 250, 250), 0.5)
        keys = 14
        kw = w / keys
        top = int(h * 0.55)
        cv2.rectangle(img, (0, top), (w, h), (248, 248, 244), -1)
        for k in range(keys + 1):
            cv2.line(img, (int(k * kw), top), (int(k * kw), h), (60, 60, 60), 1)
            if k % 7 not in (2, 6):
                cv2.rectangle(img, (int(k * kw + kw * 0.65), top), (int(k * kw + kw * 1.35), int(top + (h - top) * 0.6)), (20, 20, 20), -1)
        for _ in range(7):
            cx = int(w * rng.uniform(0.1, 0.9))
            cv2.rectangle(img, (cx - 3, int(h * 0.3)), (cx + 3, int(h * 0.52)), (235, 230, 215), -1)
            cv2.ellipse(img, (cx, int(h * 0.26)), (3, 7), 0, 0, 360, (255, 200, 90), -1, cv2.LINE_AA)
    else:  # "landscape"
        img = ctx.vgrad(_mix(tint, (200, 220, 255), 0.5), _mix(tint, (230, 230, 230), 0.4), h, w)
        yy = np.arange(h, dtype=np.float32)[:, None]
        for i, (b, a) in enumerate(((0.5, 0.1), (0.62, 0.08), (0.75, 0.06))):
            heights = _ridge(rng, w, b * h, a * h)
            mask = yy >= heights[None, :]
            img[mask] = _shade(tint, 0.8 - 0.2 * i)
    # texture + grain baked into the photo (it never changes between frames)
    noise = rng.normal(0.0, 6.0, (h, w, 1)).astype(np.float32)
    img = img + noise + 8.0 * np.sin(y * 7.0 + rng.random() * 6.0)[:, :, None]
    return _u8(img)


_PHOTO_KINDS = ("landscape", "sunset", "city", "flowers", "room", "portrait")


def _photo_set(ctx: _Ctx, n: int, w: int, h: int, faces: bool) -> list[tuple[np.ndarray, bool]]:
    out = []
    kinds = list(ctx.rng.permutation(_PHOTO_KINDS))
    for i in range(n):
        kind = kinds[i % len(kinds)]
        tint = _hue_shift(ctx.base, float(ctx.rng.uniform(-25, 25)), None, None)
        if ctx.spec.palette in ("gray", "white", "black"):
            tint = _mix(ctx.base, (128, 128, 128), 0.3)
        has_face = faces and kind == "portrait"
        out.append((_photo(ctx, kind, tint, w, h, ctx.rng, face=has_face), has_face))
    return out


def _plan_still(ctx: _Ctx, duration: float) -> _Plan:
    kind = "piano" if ctx.spec.palette == "white" else str(ctx.rng.choice(["room", "landscape", "portrait", "city"]))
    tint = ctx.base if ctx.spec.palette not in ("gray",) else np.array([120, 122, 126], np.float32)
    img = _photo(ctx, kind, tint, ctx.w, ctx.h, ctx.rng, face=(kind == "portrait"))
    if ctx.spec.palette == "gray":  # a black-and-white photograph
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        img = cv2.cvtColor(g, cv2.COLOR_GRAY2RGB)
    return _Plan([_Shot(0.0, duration, lambda t, g, im=img: im, face=(kind == "portrait"), label=f"still {kind}")])


def _plan_slideshow(ctx: _Ctx, duration: float) -> _Plan:
    segs = _segments(ctx.rng, duration, 4.0, 6.5)
    photos = _photo_set(ctx, len(segs), ctx.w, ctx.h, faces=True)
    shots = [_Shot(a, b, (lambda t, g, im=im: im), face=f, label="slide") for (a, b), (im, f) in zip(segs, photos)]
    return _Plan(shots)


def _plan_ken_burns(ctx: _Ctx, duration: float) -> _Plan:
    segs = _segments(ctx.rng, duration, 4.5, 6.5)
    photos = _photo_set(ctx, len(segs), ctx.w * 2, ctx.h * 2, faces=True)
    shots = []
    for (a, b), (im, f) in zip(segs, photos):
        z0, z1 = (1.0, 1.3) if ctx.rng.random() < 0.6 else (1.3, 1.02)
        c0 = (float(ctx.rng.uniform(0.35, 0.65)), float(ctx.rng.uniform(0.4, 0.6)))
        c1 = (float(ctx.rng.uniform(0.35, 0.65)), float(ctx.rng.uniform(0.4, 0.6)))
        length = b - a

        def draw(t, g, im=im, z0=z0, z1=z1, c0=c0, c1=c1, length=length):
            u = min(1.0, t / length)
            return _warp(im, ctx.w, ctx.h, z0 + (z1 - z0) * u, c0[0] + (c1[0] - c0[0]) * u, c0[1] + (c1[1] - c0[1]) * u)

        shots.append(_Shot(a, b, draw, face=f, label="ken burns photo"))
    return _Plan(shots)


# --------------------------------------------------------------------------- moving styles


def _plan_lyric(ctx: _Ctx, duration: float) -> _Plan:
    rng, base = ctx.rng, ctx.base
    lang = "es" if ctx.spec.lang == "es" else "en"
    themes = list(ctx.spec.lyrics_themes) or ["love"]
    lines = []
    for i in range(int(duration / 2.5) + 2):
        tmpl = _LYRICS[lang][int(rng.integers(len(_LYRICS[lang])))]
        lines.append(tmpl.format(a=rng.choice(_ADJS), n=rng.choice(_NOUNS[lang]), t=themes[i % len(themes)]))
    c1 = base
    c2 = _hue_shift(base, float(rng.choice([-60, -40, 40, 60])), 0.7, 0.45)
    c3 = _hue_shift(base, 180.0, 0.5, 0.3)
    small_h, small_w = ctx.h // 4, ctx.w // 4
    sy, sx = np.mgrid[0:small_h, 0:small_w].astype(np.float32)
    sy, sx = sy / small_h, sx / small_w
    bokeh = [(rng.random(), rng.random(), rng.uniform(0.03, 0.08), rng.uniform(-0.02, 0.02), rng.uniform(-0.015, 0.0)) for _ in range(9)]
    line_len = float(rng.uniform(2.3, 3.0))
    segs = _segments(rng, duration, 7.0, 12.0)
    shots = []
    for si, (a, b) in enumerate(segs):
        ang = float(rng.uniform(0, np.pi))
        ca, sa = math.cos(ang), math.sin(ang)
        mid = c3 if si % 2 else c2

        def draw(t, g, ca=ca, sa=sa, mid=mid, si=si):
            ph = (sx * ca + sy * sa) * 2.2 + g * 0.35
            f = (0.5 + 0.5 * np.sin(ph * np.pi))[..., None]
            small = c1[None, None, :] * f + mid[None, None, :] * (1 - f)
            img = cv2.resize(small, (ctx.w, ctx.h), interpolation=cv2.INTER_LINEAR)
            over = img.copy()
            for bx, by, br, vx, vy in bokeh:
                x = ((bx + vx * g) % 1.0) * ctx.w
                y = ((by + vy * g) % 1.0) * ctx.h
                cv2.circle(over, (int(x), int(y)), int(br * ctx.w), _col(_mix(c1, (255, 255, 255), 0.6)), -1, cv2.LINE_AA)
            img = cv2.addWeighted(img, 0.7, over, 0.3, 0)
            # lyric lines: the current one slides in, the next one waits below, dimmer
            k = int(g / line_len)
            u = (g % line_len) / line_len
            cur = lines[k % len(lines)]
            scale = 0.62 * ctx.w / 320
            tw, th = _text_size(cur, scale)
            while tw > ctx.w * 0.92 and scale > 0.3:
                scale *= 0.9
                tw, th = _text_size(cur, scale)
            slide = max(0.0, 1.0 - u / 0.15)
            x = int((ctx.w - tw) / 2 - slide * ctx.w * 0.25)
            y = int(ctx.h * 0.52)
            _text(img, cur, (x, y), scale, (255, 255, 255))
            # karaoke highlight: the sung part of the line in the palette colour
            sung = cur[: int(len(cur) * min(1.0, u * 1.3))]
            if sung:
                _text(img, sung, (x, y), scale, _mix(c1, (255, 255, 255), 0.35))
            nxt = lines[(k + 1) % len(lines)]
            s2 = scale * 0.8
            tw2, _ = _text_size(nxt, s2)
            while tw2 > ctx.w * 0.92 and s2 > 0.25:
                s2 *= 0.9
                tw2, _ = _text_size(nxt, s2)
            _text(img, nxt, (int((ctx.w - tw2) / 2), int(ctx.h * 0.52 + th * 2.2)), s2, (200, 200, 200), 1)
            return _u8(img)

        shots.append(_Shot(a, b, draw, text=True, label="lyrics over gradient"))
    return _Plan(shots, notes={"lyrics": lines[:4]})


def _plan_live(ctx: _Ctx, duration: float) -> _Plan:
    rng, base, beat = ctx.rng, ctx.base, ctx.beat
    accent = [base, base, _hue_shift(base, 30, 0.9, 1.0), (255, 245, 230), _hue_shift(base, -35, 0.9, 1.0)]
    segs = _segments(rng, duration, 0.9, 2.6)
    yy_px = np.arange(ctx.h, dtype=np.float32)[:, None]
    crowd = [(rng.random(), rng.uniform(0.85, 1.0), rng.uniform(0.05, 0.09), rng.random()) for _ in range(26)]
    shots = []
    setups = ["wide", "singer", "crowd", "rig", "wide", "guitar"]
    last = None
    for a, b in segs:
        setup = str(rng.choice([s for s in setups if s != last]))
        last = setup
        col = accent[int(rng.integers(len(accent)))]
        col2 = accent[int(rng.integers(len(accent)))]
        sweep = float(rng.uniform(0.6, 1.6))
        zoom = float(rng.uniform(0.9, 1.15))

        def draw(t, g, setup=setup, col=col, col2=col2, sweep=sweep, zoom=zoom):
            env = _beat_env(g, beat, 4.0)
            strobe = 1.0 if ((g / beat) % 4.0) > 3.75 else 0.0
            img = np.zeros((ctx.h, ctx.w, 3), np.float32) + 6.0
            beams = np.zeros_like(img)
            n_beams = 5 if setup in ("wide", "crowd") else 3
            for i in range(n_beams):
                ox = ctx.w * (i + 0.5) / n_beams
                ang = math.sin(g * sweep + i * 1.7) * 0.5
                tip = (ox + math.sin(ang) * ctx.h * 1.3, ctx.h * 1.2)
                spread = ctx.w * 0.09
                pts = np.array([[ox, -2], [tip[0] - spread, tip[1]], [tip[0] + spread, tip[1]]], np.int32)
                c = _col(_shade(col if i % 2 == 0 else col2, 0.35 + 0.65 * env))
                cv2.fillConvexPoly(beams, pts, c, cv2.LINE_AA)
            beams = cv2.blur(beams, (9, 9))
            img += beams * (0.55 + 0.6 * env + strobe)
            if setup == "wide":
                cv2.rectangle(img, (0, int(ctx.h * 0.72)), (ctx.w, ctx.h), (18, 14, 14), -1)
                for i, px in enumerate((0.22, 0.42, 0.62, 0.8)):
                    bob = math.sin(2 * math.pi * g / beat + i) * ctx.h * 0.01
                    _figure(img, ctx.w * px, ctx.h * 0.6 + bob, ctx.h * 0.42 * zoom, (4, 4, 6), (0.3 * math.sin(g * 3 + i), 0.4, 0.2, -0.2))
                cv2.rectangle(img, (int(ctx.w * 0.45), int(ctx.h * 0.55)), (int(ctx.w * 0.58), int(ctx.h * 0.72)), (10, 10, 12), -1)
            elif setup in ("singer", "guitar"):
                halo = _col(_shade(col, 0.5 + 0.5 * env))
                cv2.circle(img, (int(ctx.w * 0.5), int(ctx.h * 0.35)), int(ctx.h * 0.45), halo, -1, cv2.LINE_AA)
                img[:] = cv2.GaussianBlur(img, (0, 0), 9)
                sway = math.sin(2 * math.pi * g / (beat * 2)) * ctx.w * 0.02
                _figure(img, ctx.w * 0.5 + sway, ctx.h * 0.95, ctx.h * 1.3 * zoom, (5, 5, 7), (0.6 if setup == "singer" else 0.1, 0.2, 0, 0), thick=0.12)
                if setup == "singer":
                    cv2.line(img, (int(ctx.w * 0.56), ctx.h), (int(ctx.w * 0.53), int(ctx.h * 0.3)), (3, 3, 3), 3)
                else:
                    cv2.ellipse(img, (int(ctx.w * 0.48 + sway), int(ctx.h * 0.8)), (int(ctx.w * 0.12), int(ctx.h * 0.07)), -20, 0, 360, (4, 4, 4), -1)
            elif setup == "crowd":
                img += np.float32(_shade(col, 0.4 + 0.6 * env))[None, None, :] * (1 - yy_px / ctx.h)[..., None] * 0.6
            else:  # rig: a row of lamps flashing
                for i in range(6):
                    on = 0.3 + 0.7 * (env if i % 2 == int(g / beat) % 2 else 0.2)
                    cv2.circle(img, (int(ctx.w * (i + 0.5) / 6), int(ctx.h * 0.4)), int(ctx.h * 0.1), _col(_shade(col, on)), -1, cv2.LINE_AA)
                cv2.rectangle(img, (0, int(ctx.h * 0.25)), (ctx.w, int(ctx.h * 0.28)), (40, 40, 40), -1)
                img[:] = cv2.GaussianBlur(img, (0, 0), 2)
            if setup in ("wide", "crowd"):
                for cx, cy, r, ph in crowd:
                    jump = abs(math.sin(math.pi * (g / beat + ph))) * ctx.h * 0.03
                    x, y = int(cx * ctx.w), int(cy * ctx.h - jump)
                    cv2.circle(img, (x, y), int(r * ctx.h), (3, 3, 3), -1)
                    if ph > 0.6:
                        cv2.line(img, (x, y), (x + int(r * ctx.h), y - int(ctx.h * 0.18)), (3, 3, 3), 3)
            return _u8(img)

        shots.append(_Shot(a, b, draw, label=f"stage {setup}"))
    return _Plan(shots)


def _plan_dance(ctx: _Ctx, duration: float) -> _Plan:
    rng, base, beat = ctx.rng, ctx.base, ctx.beat
    bar = beat * ctx.spec.beats_per_bar
    segs = _segments(rng, duration, 3.0, 5.5, snap=bar)
    wall_top = _shade(base, 0.9)
    wall_bot = _hue_shift(base, 30, 0.6, 0.55)
    floor = _hue_shift(base, -20, 0.4, 0.25)
    outfit = [_hue_shift(base, 180, 0.8, 0.35), (25, 25, 30), _hue_shift(base, 150, 0.7, 0.3)]
    big_w, big_h = int(ctx.w * 1.6), int(ctx.h * 1.6)
    bg = ctx.vgrad(wall_top, wall_bot, big_h, big_w)
    bg[int(big_h * 0.66):] = floor
    for i in range(12):  # LED panels on the wall, a truss above
        x = int(big_w * (i + 0.5) / 12)
        cv2.rectangle(bg, (x - 9, int(big_h * 0.12)), (x + 9, int(big_h * 0.5)), _col(_mix(base, (255, 255, 255), 0.5)), -1)
    cv2.rectangle(bg, (0, int(big_h * 0.04)), (big_w, int(big_h * 0.08)), (40, 40, 45), -1)
    for i in range(0, big_w, 24):  # floor boards
        cv2.line(bg, (i, int(big_h * 0.66)), (int(big_w / 2 + (i - big_w / 2) * 1.8), big_h), _col(_shade(floor, 1.4)), 1)
    bg = _u8(bg)
    shots = []
    for si, (a, b) in enumerate(segs):
        framing = ("wide", "medium", "wide", "close")[si % 4]
        n = {"wide": 5, "medium": 3, "close": 2}[framing]
        size = {"wide": 0.42, "medium": 0.6, "close": 0.85}[framing] * ctx.h
        zoom = {"wide": 1.0, "medium": 1.35, "close": 1.6}[framing]
        cx = float(rng.uniform(0.4, 0.6)) if framing != "wide" else 0.5
        xs = [(i + 0.5) / n for i in range(n)]
        drift = float(rng.uniform(-0.02, 0.02))
        view = _warp(bg, ctx.w, ctx.h, zoom, cx, 0.55 if framing != "close" else 0.45)

        def draw(t, g, n=n, size=size, xs=xs, drift=drift, framing=framing, view=view):
            img = view.astype(np.float32)
            ph = 2 * math.pi * g / beat
            panel = 0.5 + 0.5 * math.cos(ph)
            img[: int(ctx.h * 0.55)] *= 0.85 + 0.15 * panel
            bounce = abs(math.sin(ph / 2)) * size * 0.12
            for i, fx in enumerate(xs):
                x = ctx.w * (fx + drift * g / 5.0) + math.sin(ph / 4 + i) * size * 0.1
                hip_y = ctx.h * 0.62 + size * 0.15 - bounce
                if framing == "close":
                    hip_y = ctx.h * 0.95 - bounce
                pose = (1.2 * math.sin(ph / 2), 1.2 * math.sin(ph / 2 + math.pi), 0.5 * math.sin(ph / 2), -0.5 * math.sin(ph / 2))
                _figure(img, x, hip_y, size, outfit[i % len(outfit)], pose, thick=0.1, head=(60, 45, 40))
            return _u8(img)

        shots.append(_Shot(a, b, draw, label=f"dance {framing}"))
    return _Plan(shots)


def _plan_cinematic(ctx: _Ctx, duration: float) -> _Plan:
    rng, base = ctx.rng, ctx.base
    bar_h = int(round(ctx.h * (1 - (ctx.w / 2.35) / ctx.h) / 2))
    ah = ctx.h - 2 * bar_h
    grade = _mix(base, (120, 120, 120), 0.3) / 255.0
    segs = _segments(rng, duration, 9.0, 14.0)
    rain = [(rng.random(), rng.random(), rng.uniform(0.7, 1.4)) for _ in range(110)]
    flicker = np.clip(np.convolve(rng.normal(0, 1, 400), np.ones(4) / 2, mode="same"), -1, 1)  # irregular lamp flicker
    shots = []
    scenes = ["street", "face", "window", "face", "street"]
    for si, (a, b) in enumerate(segs):
        scene = scenes[si % len(scenes)]
        big_w, big_h = int(ctx.w * 1.4), int(ah * 1.4)
        if scene == "street":
            src = _photo(ctx, "city", _mix(base, (40, 40, 60), 0.5), big_w, big_h, rng)
        elif scene == "window":
            src = _photo(ctx, "room", _mix(base, (40, 40, 60), 0.4), big_w, big_h, rng)
        else:
            src = _u8(ctx.vgrad(_shade(base, 0.35), _shade(base, 0.12), big_h, big_w))
            fs = int(big_h * 0.55)
            _face(src, int(big_w * 0.5), int(big_h * 0.48), fs, skin=(190, 165, 150), light=0.85)
        src = _u8(src.astype(np.float32) * grade[None, None, :] * 1.5 + 10.0)
        z0, z1 = float(rng.uniform(1.0, 1.05)), float(rng.uniform(1.1, 1.2))
        px0, px1 = float(rng.uniform(0.4, 0.5)), float(rng.uniform(0.5, 0.6))
        length = b - a

        def draw(t, g, src=src, z0=z0, z1=z1, px0=px0, px1=px1, length=length, scene=scene):
            u = t / length
            frame = np.zeros((ctx.h, ctx.w, 3), np.uint8)
            act = _warp(src, ctx.w, ah, z0 + (z1 - z0) * u, px0 + (px1 - px0) * u, 0.5).astype(np.float32)
            # a flickering practical light and rain streaks keep the frame alive
            act *= 0.92 + 0.08 * flicker[int(g * ctx.fps) % flicker.size]
            for rx, ry, sp in rain:
                y = ((ry + g * sp) % 1.0) * ah
                x = ((rx + g * 0.05) % 1.0) * ctx.w
                cv2.line(act, (int(x), int(y)), (int(x - 2), int(y + 11)), (120, 130, 150), 1)
            if scene == "street":
                walk = (0.2 + 0.6 * u) * ctx.w
                _figure(act, walk, ah * 0.72, ah * 0.5, (8, 8, 12), (0.3 * math.sin(g * 4), 0, 0.4 * math.sin(g * 4), -0.4 * math.sin(g * 4)))
            frame[bar_h : bar_h + ah] = _u8(act)
            return frame

        shots.append(_Shot(a, b, draw, face=(scene == "face"), label=f"drama {scene}"))
    return _Plan(shots, letterbox=True, notes={"bar_px": bar_h})


def _plan_nature(ctx: _Ctx, duration: float) -> _Plan:
    rng, base = ctx.rng, ctx.base
    segs = _segments(rng, duration, 9.0, 15.0)
    shots = []
    icy = ctx.spec.palette in ("teal", "cyan", "blue", "white")
    for si, (a, b) in enumerate(segs):
        dusk = si % 2 == 1
        if icy:
            sky_top, sky_bot = _mix((40, 70, 120), base, 0.3), _mix((190, 225, 235), base, 0.25)
        else:
            sky_top, sky_bot = (70, 130, 210), (200, 225, 240)
        if dusk:
            sky_top, sky_bot = _mix(sky_top, (60, 40, 90), 0.5), _mix(sky_bot, (250, 170, 110), 0.5)
        sky = _u8(ctx.vgrad(sky_top, sky_bot))
        n = ctx.w * 4
        ridges = []
        for k in range(3):
            base_y = ctx.h * (0.42 + 0.12 * k)
            amp = ctx.h * (0.14 if icy and k == 0 else 0.07)
            hts = _ridge(rng, n, base_y, amp, waves=6 if icy and k == 0 else 4)
            if icy and k == 0:
                hts = hts - np.abs(np.sin(np.arange(n) / n * np.pi * 26)) * ctx.h * 0.08
            shade = (0.95 - 0.25 * k) if icy else (0.85 - 0.22 * k)
            colour = _mix(_shade(base, shade), (235, 245, 250) if icy and k == 0 else (40, 60, 30), 0.3 if not icy else 0.35 - 0.1 * k)
            ridges.append(_layer_strip(rng, hts, ctx.h, ctx.w, colour, 6.0 + 4.0 * k, trees=not (icy and k == 0)))
        water_y = int(ctx.h * (0.78 + 0.05 * rng.random()))
        water = _u8(ctx.vgrad(_mix(sky_bot, base, 0.4), _shade(_mix(sky_top, base, 0.5), 0.6), ctx.h - water_y, ctx.w))
        speeds = [float(rng.uniform(3.0, 5.0)) * (k + 1) for k in range(3)]
        clouds = [(rng.random(), rng.uniform(0.05, 0.3), rng.uniform(0.06, 0.14)) for _ in range(5)]
        sun = (float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.15, 0.3)))
        shimmer = [(rng.random(), rng.random(), rng.uniform(0.03, 0.1)) for _ in range(30)]
        birds = [(rng.random(), rng.uniform(0.1, 0.3)) for _ in range(4)]

        def draw(t, g, sky=sky, ridges=ridges, water=water, water_y=water_y, speeds=speeds, clouds=clouds, sun=sun, shimmer=shimmer, birds=birds, dusk=dusk):
            img = sky.copy()
            sc = (255, 200, 140) if dusk else (255, 250, 225)
            cv2.circle(img, (int(sun[0] * ctx.w), int(sun[1] * ctx.h)), int(ctx.h * 0.07), sc, -1, cv2.LINE_AA)
            for cx, cy, r in clouds:
                x = int(((cx + g * 0.008) % 1.2 - 0.1) * ctx.w)
                cv2.ellipse(img, (x, int(cy * ctx.h)), (int(r * ctx.w), int(r * ctx.h * 0.6)), 0, 0, 360, (240, 242, 246), -1, cv2.LINE_AA)
            for bx, by in birds:
                x = int(((bx + g * 0.02) % 1.0) * ctx.w)
                y = int(by * ctx.h + 3 * math.sin(g * 3 + bx * 9))
                cv2.polylines(img, [np.array([[x - 4, y - 2], [x, y + 1], [x + 4, y - 2]], np.int32)], False, (30, 30, 40), 1, cv2.LINE_AA)
            _paste_layers(img, ridges, [int(g * s) for s in speeds])
            img[water_y:] = water
            for sx, sy, ln in shimmer:
                y = water_y + int(sy * (ctx.h - water_y))
                x = int(((sx + 0.04 * math.sin(g * 2.5 + sy * 20) + g * 0.01) % 1.0) * ctx.w)
                cv2.line(img, (x, y), (x + int(ln * ctx.w), y), (235, 240, 245), 1)
            return img

        shots.append(_Shot(a, b, draw, label="landscape dusk" if dusk else "landscape day"))
    return _Plan(shots)


def _plan_animation(ctx: _Ctx, duration: float) -> _Plan:
    rng, base, beat = ctx.rng, ctx.base, ctx.beat
    segs = _segments(rng, duration, 4.0, 6.5)
    shots = []
    prev_shift = None
    for si, (a, b) in enumerate(segs):
        shift = float(rng.choice([s for s in (0.0, 25.0, -25.0, 180.0, 140.0) if s != prev_shift]))
        prev_shift = shift
        bg = _hue_shift(base, shift, 0.75, 0.95)
        ground = _hue_shift(base, shift + float(rng.choice([90, 120, -90])), 0.85, 0.75)
        horizon = int(ctx.h * rng.uniform(0.68, 0.8))
        shapes = []
        for k in range(int(rng.integers(4, 7))):
            shapes.append(
                dict(
                    kind=str(rng.choice(["circle", "square", "star", "triangle"])),
                    x=float(rng.uniform(0.1, 0.9)),
                    vx=float(rng.uniform(-0.08, 0.08)),
                    r=float(rng.uniform(0.07, 0.13)),
                    col=_col(_hue_shift(base, float(rng.uniform(0, 360)), 0.95, 1.0)),
                    ph=float(rng.random()),
                    spin=float(rng.uniform(-2, 2)),
                )
            )
        sun = bool(rng.random() < 0.5)

        def draw(t, g, bg=bg, ground=ground, horizon=horizon, shapes=shapes, sun=sun):
            img = np.empty((ctx.h, ctx.w, 3), np.uint8)
            img[:horizon] = _col(bg)
            img[horizon:] = _col(ground)
            if sun:
                cv2.circle(img, (int(ctx.w * 0.85), int(ctx.h * 0.18)), int(ctx.h * 0.1), (255, 230, 40), -1, cv2.LINE_AA)
                cv2.circle(img, (int(ctx.w * 0.85), int(ctx.h * 0.18)), int(ctx.h * 0.1), (20, 20, 20), 2, cv2.LINE_AA)
            for s in shapes:
                r = s["r"] * ctx.h
                ph = (g / (beat * 2) + s["ph"]) % 1.0
                height = 4 * ph * (1 - ph)  # parabolic bounce, one per two beats
                y = horizon - r - height * ctx.h * 0.45
                x = ((s["x"] + s["vx"] * g) % 1.0) * ctx.w
                squash = 1.0 + (0.25 if height < 0.12 else 0.0)
                ang = s["spin"] * g
                if s["kind"] == "circle":
                    cv2.ellipse(img, (int(x), int(y + r * (squash - 1))), (int(r * squash), int(r / squash)), 0, 0, 360, s["col"], -1, cv2.LINE_AA)
                    cv2.ellipse(img, (int(x), int(y + r * (squash - 1))), (int(r * squash), int(r / squash)), 0, 0, 360, (20, 20, 20), 2, cv2.LINE_AA)
                    cv2.circle(img, (int(x - r * 0.3), int(y - r * 0.2)), max(2, int(r * 0.15)), (255, 255, 255), -1, cv2.LINE_AA)
                    cv2.circle(img, (int(x + r * 0.3), int(y - r * 0.2)), max(2, int(r * 0.15)), (255, 255, 255), -1, cv2.LINE_AA)
                    continue
                n = {"square": 4, "star": 10, "triangle": 3}[s["kind"]]
                pts = []
                for j in range(n):
                    rr = r * (0.45 if s["kind"] == "star" and j % 2 else 1.0)
                    aa = ang + 2 * math.pi * j / n
                    pts.append([x + rr * math.cos(aa), y + rr * math.sin(aa)])
                p = np.array(pts, np.int32)
                cv2.fillPoly(img, [p], s["col"], cv2.LINE_AA)
                cv2.polylines(img, [p], True, (20, 20, 20), 2, cv2.LINE_AA)
            return img

        shots.append(_Shot(a, b, draw, label="cartoon"))
    return _Plan(shots)


def _plan_abstract(ctx: _Ctx, duration: float) -> _Plan:
    rng, base = ctx.rng, ctx.base
    segs = _segments(rng, duration, 3.5, 6.0)
    sh, sw = ctx.h // 3, ctx.w // 3
    y, x = np.mgrid[0:sh, 0:sw].astype(np.float32)
    x = (x - sw / 2) / sh
    y = (y - sh / 2) / sh
    r = np.sqrt(x * x + y * y)
    th = np.arctan2(y, x)
    lut_cols = [_hue_shift(base, d, 0.95, 1.0) for d in (0, 25, -30, 50, -55)]
    shots = []
    for si, (a, b) in enumerate(segs):
        mode = ("plasma", "spiral", "kaleido", "rings")[int(rng.integers(4))] if si else "spiral"
        c = [lut_cols[0]] + [lut_cols[1 + int(i)] for i in rng.permutation(len(lut_cols) - 1)[:2]]
        k1, k2 = float(rng.uniform(3, 7)), float(rng.uniform(2, 5))

        def draw(t, g, mode=mode, c=c, k1=k1, k2=k2):
            if mode == "plasma":
                v = np.sin(x * k1 + g * 1.3) + np.sin(y * k2 - g * 0.9) + np.sin((x + y) * 3.0 + g) + np.sin(r * 8 - g * 2)
            elif mode == "spiral":
                v = np.sin(th * 3 + r * k1 * 3 - g * 2.5) * 2 + np.sin(r * 10 - g * 1.5)
            elif mode == "kaleido":
                tt = np.abs(((th + g * 0.4) % (np.pi / 3)) - np.pi / 6)
                v = np.sin(tt * k1 * 4 + r * 9 - g * 2) * 2 + np.cos(r * k2 * 4 + g)
            else:
                v = np.sin(r * k1 * 5 - g * 3) * 2 + np.sin(th * 5 + g)
            f = (np.sin(v * 1.3) * 0.5 + 0.5)[..., None]
            f2 = (np.cos(v * 0.7 + g * 0.5) * 0.5 + 0.5)[..., None]
            small = c[0][None, None] * f + c[1][None, None] * (1 - f)
            small = small * (0.55 + 0.45 * f2) + c[2][None, None] * (1 - f2) * 0.45
            return _u8(cv2.resize(small, (ctx.w, ctx.h), interpolation=cv2.INTER_CUBIC))

        shots.append(_Shot(a, b, draw, label=f"abstract {mode}"))
    return _Plan(shots)


def _plan_story(ctx: _Ctx, duration: float) -> _Plan:
    rng, base = ctx.rng, ctx.base
    segs = _segments(rng, duration, 3.0, 5.5)
    warm = _mix(base, (200, 180, 160), 0.4)
    shots = []
    scene_cycle = ["street", "face", "room", "two", "face", "street", "bus", "room"]
    street = _photo(ctx, "city", _mix(base, (60, 60, 90), 0.5), int(ctx.w * 1.6), ctx.h, rng)
    room = _photo(ctx, "room", warm, ctx.w, ctx.h, rng)
    for si, (a, b) in enumerate(segs):
        scene = scene_cycle[si % len(scene_cycle)]
        length = b - a
        look = float(rng.uniform(-1, 1))
        z0, z1 = (1.02, float(rng.uniform(1.12, 1.2))) if rng.random() < 0.6 else (float(rng.uniform(1.12, 1.2)), 1.02)
        cx0, cx1 = float(rng.uniform(0.42, 0.5)), float(rng.uniform(0.5, 0.58))

        def draw(t, g, scene=scene, length=length, look=look, z0=z0, z1=z1, cx0=cx0, cx1=cx1):
            u = t / length
            if scene in ("street", "bus"):
                img = _warp(street, ctx.w, ctx.h, 1.6, 0.3 + 0.4 * u, 0.5).astype(np.float32) if scene == "street" else street[:, : ctx.w].astype(np.float32)
                if scene == "street":
                    x = ctx.w * (0.1 + 0.8 * u)
                    sw = math.sin(g * 6)
                    _figure(img, x, ctx.h * 0.7, ctx.h * 0.5, (30, 25, 20), (0.4 * sw, -0.4 * sw, 0.5 * sw, -0.5 * sw), head=(200, 160, 130))
                else:
                    bx = int(ctx.w * (1.2 - 1.6 * u))
                    cv2.rectangle(img, (bx, int(ctx.h * 0.45)), (bx + int(ctx.w * 0.5), int(ctx.h * 0.9)), _col(base), -1)
                    for wx in range(bx + 8, bx + int(ctx.w * 0.5) - 10, 22):
                        cv2.rectangle(img, (wx, int(ctx.h * 0.5)), (wx + 16, int(ctx.h * 0.65)), (220, 235, 240), -1)
            elif scene == "face":
                img = ctx.vgrad(_shade(warm, 0.9), _shade(warm, 0.5)).copy()
                cv2.rectangle(img, (int(ctx.w * 0.05), int(ctx.h * 0.1)), (int(ctx.w * 0.3), int(ctx.h * 0.6)), _col(_shade(warm, 1.15)), -1)
                s = int(ctx.h * (0.5 + 0.06 * u))
                _figure(img, ctx.w * 0.5, ctx.h * 1.5, ctx.h * 1.6, _shade(base, 0.5), thick=0.18)
                _face(img, int(ctx.w * (0.5 + 0.03 * look * math.sin(g))), int(ctx.h * 0.45), s)
            elif scene == "two":
                img = room.astype(np.float32).copy()
                for fx in (0.33, 0.67):
                    _figure(img, ctx.w * fx, ctx.h * 1.05, ctx.h * 1.0, _shade(base, 0.45), thick=0.15)
                    _face(img, int(ctx.w * fx), int(ctx.h * 0.36 + 2 * math.sin(g * 2 + fx * 5)), int(ctx.h * 0.3))
            else:  # room: someone by the window, lamp light breathing
                img = room.astype(np.float32) * (0.9 + 0.08 * math.sin(g * 1.1))
                x = ctx.w * (0.6 - 0.15 * u)
                _figure(img, x, ctx.h * 0.7, ctx.h * 0.55, (40, 32, 28), (0.2, -0.5 * u, 0, 0), head=(190, 150, 120))
            # a slow camera move over every scene
            return _warp(_u8(img), ctx.w, ctx.h, z0 + (z1 - z0) * u, cx0 + (cx1 - cx0) * u, 0.5)

        shots.append(_Shot(a, b, draw, face=scene in ("face", "two"), label=f"story {scene}"))
    return _Plan(shots)


def _plan_bts(ctx: _Ctx, duration: float) -> _Plan:
    rng, base = ctx.rng, ctx.base
    segs = _segments(rng, duration, 4.0, 8.0)
    pad = 24
    big_w, big_h = ctx.w + 2 * pad, ctx.h + 2 * pad
    grain = [rng.normal(0, 7, (ctx.h, ctx.w, 1)).astype(np.float32) for _ in range(4)]
    shots = []
    for si, (a, b) in enumerate(segs):
        scene = ("studio", "control room", "hallway")[si % 3] if si < 3 else str(rng.choice(["studio", "control room", "hallway"]))
        wall = _mix(base, (150, 140, 130), 0.5) * float(rng.uniform(0.75, 1.2))
        studio = ctx.vgrad(_shade(wall, 1.1), _shade(wall, 0.6), big_h, big_w).copy()
        if scene == "studio":
            cv2.rectangle(studio, (0, int(big_h * 0.7)), (big_w, big_h), _col(_shade(wall, 0.45)), -1)
            for k in range(int(rng.integers(2, 4))):  # light stands with softboxes
                x = int(big_w * rng.uniform(0.1, 0.9))
                cv2.line(studio, (x, int(big_h * 0.3)), (x, int(big_h * 0.85)), (40, 40, 40), 2)
                cv2.rectangle(studio, (x - 18, int(big_h * 0.15)), (x + 18, int(big_h * 0.35)), (235, 232, 225), -1)
            cv2.circle(studio, (int(big_w * 0.8), int(big_h * 0.62)), int(big_h * 0.08), (30, 30, 30), -1)  # a drum
        elif scene == "control room":
            cv2.rectangle(studio, (0, int(big_h * 0.55)), (big_w, big_h), _col(_shade(wall, 0.35)), -1)
            cv2.rectangle(studio, (int(big_w * 0.15), int(big_h * 0.5)), (int(big_w * 0.85), int(big_h * 0.72)), (50, 48, 46), -1)  # desk
            for k in range(24):  # faders
                kx = int(big_w * (0.18 + 0.027 * k))
                cv2.line(studio, (kx, int(big_h * 0.53)), (kx, int(big_h * 0.62)), (170, 170, 170), 1)
            for k in range(3):  # screens
                x = int(big_w * (0.22 + 0.22 * k))
                cv2.rectangle(studio, (x, int(big_h * 0.2)), (x + int(big_w * 0.16), int(big_h * 0.42)), (200, 205, 210), -1)
        else:
            cx = big_w // 2
            for f in (0.0, 0.15, 0.3):  # corridor perspective
                cv2.rectangle(studio, (int(cx - big_w * (0.5 - f)), int(big_h * (0.05 + f * 0.6))), (int(cx + big_w * (0.5 - f)), int(big_h * (0.95 - f * 0.5))), _col(_shade(wall, 0.5 + f)), 2)
            cv2.rectangle(studio, (int(cx - big_w * 0.1), int(big_h * 0.3)), (int(cx + big_w * 0.1), int(big_h * 0.7)), (235, 230, 220), -1)
        people = [(float(rng.uniform(0.15, 0.75)), float(rng.uniform(-0.03, 0.03)), float(rng.random())) for _ in range(int(rng.integers(1, 4)))]
        steps = int((b - a) * ctx.fps) + 2
        walk = np.zeros((steps, 2), np.float32)
        kicks = rng.normal(0, 1.6, (steps, 2)).astype(np.float32)
        for j in range(1, steps):  # a hand-held camera: a wobbly, mean-reverting path
            walk[j] = 0.85 * walk[j - 1] + kicks[j]
        walk = np.clip(walk, -pad + 4, pad - 4)

        def draw(t, g, studio=studio, people=people, walk=walk):
            i = min(int(t * ctx.fps), len(walk) - 1)
            jx, jy = walk[i]
            jx += 2.5 * math.sin(g * 23.0)
            jy += 2.0 * math.sin(g * 17.0 + 1)
            x0, y0 = int(pad + np.clip(jx, -pad, pad)), int(pad + np.clip(jy, -pad, pad))
            img = studio[y0 : y0 + ctx.h, x0 : x0 + ctx.w].astype(np.float32).copy()
            for px, vx, ph in people:
                x = ctx.w * (px + vx * g)
                sw = math.sin(g * 2 + ph * 6) * 0.4
                _figure(img, x - x0 + pad, ctx.h * 0.7 - y0 + pad, ctx.h * 0.55, (60, 50, 45), (sw, -sw, 0.2 * sw, -0.2 * sw), head=(170, 140, 120))
            img += grain[int(g * ctx.fps) % len(grain)]
            gray = img.mean(axis=2, keepdims=True)
            img = gray + (img - gray) * 0.25  # washed-out, nearly monochrome
            return _u8(img)

        shots.append(_Shot(a, b, draw, label="behind the scenes"))
    return _Plan(shots)


_STYLE_PLANS = {
    "Lyric Video": _plan_lyric,
    "Live Performance": _plan_live,
    "Dance Performance": _plan_dance,
    "Cinematic Drama": _plan_cinematic,
    "Nature/Scenic": _plan_nature,
    "Animation": _plan_animation,
    "Artistic/Abstract": _plan_abstract,
    "Story Narrative": _plan_story,
    "Behind-the-Scenes": _plan_bts,
    "Static/Dynamic Picture Montage": _plan_ken_burns,
}


def _faces_seen(frame: np.ndarray) -> int:
    """Faces the builder's own detector finds on a rendered (RGB) frame, so ``has_face``
    promises only what ``analyse_video`` can measure."""
    return len(detect_faces(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)))


# --------------------------------------------------------------------------- entry point


def render_video(spec: ClipSpec, path: Path, duration: float = CLIP_SECONDS, audio_path: Path | None = None, *, fps: int = FPS, size: tuple[int, int] = (WIDTH, HEIGHT)) -> dict:
    """Draw and encode the clip's synthetic MV; return its ground truth.

    Truth keys: video_kind, mv_style, palette, has_face (verified by the Haar cascade on
    rendered frames), has_text_overlay, shots, cut_times, letterbox, width, height, fps,
    duration, frames, audio (muxed or not), seconds (wall time).
    """
    import av

    t0 = time.perf_counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = int(size[0]) // 2 * 2, int(size[1]) // 2 * 2
    rng = np.random.default_rng([int(spec.seed), 20250])
    beat = 60.0 / (spec.tempo if spec.tempo and spec.tempo > 0 else 120.0)
    ctx = _Ctx(w=w, h=h, fps=int(fps), spec=spec, rng=rng, base=_rgb(spec.palette), beat=beat)
    if spec.video_kind == "still":
        plan = _plan_still(ctx, duration)
    elif spec.video_kind == "slideshow":
        plan = _plan_slideshow(ctx, duration)
    elif spec.video_kind == "ken_burns":
        plan = _plan_ken_burns(ctx, duration)
    else:
        plan = _STYLE_PLANS.get(spec.mv_style, _plan_abstract)(ctx, duration)

    n_frames = max(1, int(round(duration * fps)))
    face_checks: dict[int, list[int]] = {}
    container = av.open(str(path), mode="w")
    audio = None
    try:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23", "g": str(int(fps) * 2), "threads": "1"}
        if audio_path is not None:  # every stream must exist before the first packet is written
            audio = _open_audio(container, Path(audio_path))
        shot_i = 0
        for i in range(n_frames):
            t = i / fps
            while shot_i < len(plan.shots) - 1 and t >= plan.shots[shot_i + 1].start - 1e-9:
                shot_i += 1
            shot = plan.shots[shot_i]
            frame = shot.draw(t - shot.start, t)
            if frame.dtype != np.uint8:
                frame = _u8(frame)
            if shot.face and i % max(1, fps) == 0:  # verify drawn faces once a second
                face_checks.setdefault(shot_i, []).append(_faces_seen(frame))
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        audio_ok = _mux_audio(container, audio, duration) if audio is not None else False
        audio = None
    finally:
        if audio is not None:
            audio[0].close()
        container.close()

    verified = [si for si, hits in face_checks.items() if hits and sum(1 for c in hits if c > 0) >= max(1, len(hits) // 2)]
    cut_times = [round(s.start, 3) for s in plan.shots[1:]]
    truth = {
        "video_kind": spec.video_kind,
        "mv_style": spec.mv_style,
        "palette": spec.palette,
        "has_face": bool(verified),
        "face_shots": sorted(verified),
        "has_text_overlay": any(s.text for s in plan.shots),
        "shots": len(plan.shots),
        "cut_times": cut_times,
        "shot_labels": [s.label for s in plan.shots],
        "letterbox": plan.letterbox,
        "width": w,
        "height": h,
        "fps": int(fps),
        "duration": float(duration),
        "frames": n_frames,
        "audio": audio_ok,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    truth.update({k: v for k, v in plan.notes.items() if k not in truth})
    return truth


def _open_audio(container, audio_path: Path):
    """Open the audio file and add an AAC stream for it (before any packet is written)."""
    import av

    src = av.open(str(audio_path))
    if not src.streams.audio:
        src.close()
        return None
    out = container.add_stream("aac", rate=44100)
    out.layout = "stereo"
    return src, src.streams.audio[0], out


def _mux_audio(container, audio, duration: float) -> bool:
    """Encode the first ``duration`` seconds of the opened audio into its AAC stream."""
    import av

    src, ain, out = audio
    try:
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=44100)
        limit = int(duration * 44100)
        written = 0

        def emit(frames) -> None:
            nonlocal written
            for rf in frames:
                if written >= limit:
                    return
                rf.pts = written
                written += rf.samples
                for packet in out.encode(rf):
                    container.mux(packet)

        for frame in src.decode(ain):
            frame.pts = None
            emit(resampler.resample(frame))
            if written >= limit:
                break
        emit(resampler.resample(None))
        for packet in out.encode(None):
            container.mux(packet)
        return written > 0
    finally:
        src.close()
