"""Procedurally drawn photographs (landscape, sunset, city, flowers, room, portrait, piano)
and the three video kinds made of them: one still, a hard-cut slideshow, and a Ken Burns
montage (slow zoom/pan); the cinematic and story styles reuse the photographs as sets."""

from __future__ import annotations

import cv2
import numpy as np

from builders.sample.video.canvas import _col, _Ctx, _hue_shift, _mix, _Plan, _segments, _shade, _Shot, _u8
from builders.sample.video.draw import _face, _figure, _ridge, _warp


def _photo(ctx: _Ctx, kind: str, tint, w: int, h: int, rng: np.random.Generator, face: bool = False) -> np.ndarray:
    """A procedurally drawn 'photograph' (textured, with grain baked in) of size w x h."""
    tint = np.asarray(tint, np.float32)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    img: np.ndarray
    if kind == "sunset":
        sky = ctx.vgrad(_mix(tint, (255, 230, 160), 0.4), _mix(tint, (120, 40, 80), 0.5), h, w)
        img = sky.copy()
        cv2.circle(img, (int(w * rng.uniform(0.3, 0.7)), int(h * 0.55)), int(h * 0.12),
                   _col(_mix(tint, (255, 240, 200), 0.7)), -1, cv2.LINE_AA)
        sea = (np.arange(h)[:, None] >= int(h * 0.62)) & np.ones((1, w), bool)
        img[sea] = _shade(_mix(tint, (30, 30, 80), 0.5), 0.8)
        for _ in range(40):
            yy = int(h * rng.uniform(0.63, 1.0))
            xx = int(w * rng.uniform(0, 1))
            cv2.line(img, (xx, yy), (xx + int(w * rng.uniform(0.02, 0.1)), yy),
                     _col(_mix(tint, (255, 230, 180), 0.5)), 1)
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
        cv2.rectangle(img, (int(w * 0.55), int(h * 0.15)), (int(w * 0.85), int(h * 0.55)),
                      _col(_mix(tint, (230, 235, 240), 0.7)), -1)
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
                cv2.rectangle(img, (int(k * kw + kw * 0.65), top),
                              (int(k * kw + kw * 1.35), int(top + (h - top) * 0.6)), (20, 20, 20), -1)
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
