"""Shot plans for the MV types built from imagery rather than performers: Cinematic Drama,
Nature/Scenic, Animation, Artistic/Abstract and Story Narrative (see the package docstring)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from builders.sample.video.canvas import _col, _Ctx, _hue_shift, _mix, _Plan, _segments, _shade, _Shot, _u8
from builders.sample.video.draw import _face, _figure, _layer_strip, _paste_layers, _ridge, _warp
from builders.sample.video.photos import _photo


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
                _figure(act, walk, ah * 0.72, ah * 0.5, (8, 8, 12),
                        (0.3 * math.sin(g * 4), 0, 0.4 * math.sin(g * 4), -0.4 * math.sin(g * 4)))
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
            colour = _mix(_shade(base, shade), (235, 245, 250) if icy and k == 0 else (40, 60, 30),
                          0.3 if not icy else 0.35 - 0.1 * k)
            ridges.append(_layer_strip(rng, hts, ctx.h, ctx.w, colour, 6.0 + 4.0 * k, trees=not (icy and k == 0)))
        water_y = int(ctx.h * (0.78 + 0.05 * rng.random()))
        water = _u8(ctx.vgrad(_mix(sky_bot, base, 0.4), _shade(_mix(sky_top, base, 0.5), 0.6), ctx.h - water_y, ctx.w))
        speeds = [float(rng.uniform(3.0, 5.0)) * (k + 1) for k in range(3)]
        clouds = [(rng.random(), rng.uniform(0.05, 0.3), rng.uniform(0.06, 0.14)) for _ in range(5)]
        sun = (float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.15, 0.3)))
        shimmer = [(rng.random(), rng.random(), rng.uniform(0.03, 0.1)) for _ in range(30)]
        birds = [(rng.random(), rng.uniform(0.1, 0.3)) for _ in range(4)]

        def draw(t, g, sky=sky, ridges=ridges, water=water, water_y=water_y, speeds=speeds,
                 clouds=clouds, sun=sun, shimmer=shimmer, birds=birds, dusk=dusk):
            img = sky.copy()
            sc = (255, 200, 140) if dusk else (255, 250, 225)
            cv2.circle(img, (int(sun[0] * ctx.w), int(sun[1] * ctx.h)), int(ctx.h * 0.07), sc, -1, cv2.LINE_AA)
            for cx, cy, r in clouds:
                x = int(((cx + g * 0.008) % 1.2 - 0.1) * ctx.w)
                cv2.ellipse(img, (x, int(cy * ctx.h)), (int(r * ctx.w), int(r * ctx.h * 0.6)),
                            0, 0, 360, (240, 242, 246), -1, cv2.LINE_AA)
            for bx, by in birds:
                x = int(((bx + g * 0.02) % 1.0) * ctx.w)
                y = int(by * ctx.h + 3 * math.sin(g * 3 + bx * 9))
                cv2.polylines(img, [np.array([[x - 4, y - 2], [x, y + 1], [x + 4, y - 2]], np.int32)],
                              False, (30, 30, 40), 1, cv2.LINE_AA)
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
                cv2.circle(img, (int(ctx.w * 0.85), int(ctx.h * 0.18)),
                           int(ctx.h * 0.1), (255, 230, 40), -1, cv2.LINE_AA)
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
                    cv2.ellipse(img, (int(x), int(y + r * (squash - 1))),
                                (int(r * squash), int(r / squash)), 0, 0, 360, s["col"], -1, cv2.LINE_AA)
                    cv2.ellipse(img, (int(x), int(y + r * (squash - 1))),
                                (int(r * squash), int(r / squash)), 0, 0, 360, (20, 20, 20), 2, cv2.LINE_AA)
                    cv2.circle(img, (int(x - r * 0.3), int(y - r * 0.2)),
                               max(2, int(r * 0.15)), (255, 255, 255), -1, cv2.LINE_AA)
                    cv2.circle(img, (int(x + r * 0.3), int(y - r * 0.2)),
                               max(2, int(r * 0.15)), (255, 255, 255), -1, cv2.LINE_AA)
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
                v = (np.sin(x * k1 + g * 1.3) + np.sin(y * k2 - g * 0.9)
                     + np.sin((x + y) * 3.0 + g) + np.sin(r * 8 - g * 2))
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
                img = (_warp(street, ctx.w, ctx.h, 1.6, 0.3 + 0.4 * u, 0.5).astype(np.float32) if scene == "street"
                       else street[:, : ctx.w].astype(np.float32))
                if scene == "street":
                    x = ctx.w * (0.1 + 0.8 * u)
                    sw = math.sin(g * 6)
                    _figure(img, x, ctx.h * 0.7, ctx.h * 0.5, (30, 25, 20),
                            (0.4 * sw, -0.4 * sw, 0.5 * sw, -0.5 * sw), head=(200, 160, 130))
                else:
                    bx = int(ctx.w * (1.2 - 1.6 * u))
                    cv2.rectangle(img, (bx, int(ctx.h * 0.45)),
                                  (bx + int(ctx.w * 0.5), int(ctx.h * 0.9)), _col(base), -1)
                    for wx in range(bx + 8, bx + int(ctx.w * 0.5) - 10, 22):
                        cv2.rectangle(img, (wx, int(ctx.h * 0.5)), (wx + 16, int(ctx.h * 0.65)), (220, 235, 240), -1)
            elif scene == "face":
                img = ctx.vgrad(_shade(warm, 0.9), _shade(warm, 0.5)).copy()
                cv2.rectangle(img, (int(ctx.w * 0.05), int(ctx.h * 0.1)),
                              (int(ctx.w * 0.3), int(ctx.h * 0.6)), _col(_shade(warm, 1.15)), -1)
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
