"""Shot plans for the MV types about the music being performed or sung: Lyric Video, Live
Performance, Dance Performance and Behind-the-Scenes (see the package docstring)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from builders.sample.video.canvas import _col, _Ctx, _hue_shift, _mix, _Plan, _segments, _shade, _Shot, _u8
from builders.sample.video.draw import _beat_env, _figure, _text, _text_size, _warp

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
_NOUNS = {"en": ["night", "rain", "city", "summer", "fire", "ocean", "sky", "dark"],
          "es": ["noche", "luna", "playa", "faro"]}
_ADJS = ["wild", "young", "golden", "lonely", "electric", "broken", "neon"]


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
    bokeh = [(rng.random(), rng.random(), rng.uniform(0.03, 0.08), rng.uniform(-0.02, 0.02), rng.uniform(-0.015, 0.0))
             for _ in range(9)]
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
                cv2.circle(over, (int(x), int(y)), int(br * ctx.w),
                           _col(_mix(c1, (255, 255, 255), 0.6)), -1, cv2.LINE_AA)
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
                    _figure(img, ctx.w * px, ctx.h * 0.6 + bob, ctx.h * 0.42 * zoom,
                            (4, 4, 6), (0.3 * math.sin(g * 3 + i), 0.4, 0.2, -0.2))
                cv2.rectangle(img, (int(ctx.w * 0.45), int(ctx.h * 0.55)),
                              (int(ctx.w * 0.58), int(ctx.h * 0.72)), (10, 10, 12), -1)
            elif setup in ("singer", "guitar"):
                halo = _col(_shade(col, 0.5 + 0.5 * env))
                cv2.circle(img, (int(ctx.w * 0.5), int(ctx.h * 0.35)), int(ctx.h * 0.45), halo, -1, cv2.LINE_AA)
                img[:] = cv2.GaussianBlur(img, (0, 0), 9)
                sway = math.sin(2 * math.pi * g / (beat * 2)) * ctx.w * 0.02
                _figure(img, ctx.w * 0.5 + sway, ctx.h * 0.95, ctx.h * 1.3 * zoom, (5, 5, 7),
                        (0.6 if setup == "singer" else 0.1, 0.2, 0, 0), thick=0.12)
                if setup == "singer":
                    cv2.line(img, (int(ctx.w * 0.56), ctx.h), (int(ctx.w * 0.53), int(ctx.h * 0.3)), (3, 3, 3), 3)
                else:
                    cv2.ellipse(img, (int(ctx.w * 0.48 + sway), int(ctx.h * 0.8)),
                                (int(ctx.w * 0.12), int(ctx.h * 0.07)), -20, 0, 360, (4, 4, 4), -1)
            elif setup == "crowd":
                img += np.float32(_shade(col, 0.4 + 0.6 * env))[None, None, :] * (1 - yy_px / ctx.h)[..., None] * 0.6
            else:  # rig: a row of lamps flashing
                for i in range(6):
                    on = 0.3 + 0.7 * (env if i % 2 == int(g / beat) % 2 else 0.2)
                    cv2.circle(img, (int(ctx.w * (i + 0.5) / 6), int(ctx.h * 0.4)),
                               int(ctx.h * 0.1), _col(_shade(col, on)), -1, cv2.LINE_AA)
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
        cv2.rectangle(bg, (x - 9, int(big_h * 0.12)), (x + 9, int(big_h * 0.5)),
                      _col(_mix(base, (255, 255, 255), 0.5)), -1)
    cv2.rectangle(bg, (0, int(big_h * 0.04)), (big_w, int(big_h * 0.08)), (40, 40, 45), -1)
    for i in range(0, big_w, 24):  # floor boards
        cv2.line(bg, (i, int(big_h * 0.66)), (int(big_w / 2 + (i - big_w / 2) * 1.8), big_h),
                 _col(_shade(floor, 1.4)), 1)
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
                pose = (1.2 * math.sin(ph / 2), 1.2 * math.sin(ph / 2 + math.pi),
                        0.5 * math.sin(ph / 2), -0.5 * math.sin(ph / 2))
                _figure(img, x, hip_y, size, outfit[i % len(outfit)], pose, thick=0.1, head=(60, 45, 40))
            return _u8(img)

        shots.append(_Shot(a, b, draw, label=f"dance {framing}"))
    return _Plan(shots)


def _plan_bts(ctx: _Ctx, duration: float) -> _Plan:
    rng, base = ctx.rng, ctx.base
    segs = _segments(rng, duration, 4.0, 8.0)
    pad = 24
    big_w, big_h = ctx.w + 2 * pad, ctx.h + 2 * pad
    grain = [rng.normal(0, 7, (ctx.h, ctx.w, 1)).astype(np.float32) for _ in range(4)]
    shots = []
    for si, (a, b) in enumerate(segs):
        scene = (("studio", "control room", "hallway")[si % 3] if si < 3
                 else str(rng.choice(["studio", "control room", "hallway"])))
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
            cv2.rectangle(studio, (int(big_w * 0.15), int(big_h * 0.5)),
                          (int(big_w * 0.85), int(big_h * 0.72)), (50, 48, 46), -1)  # desk
            for k in range(24):  # faders
                kx = int(big_w * (0.18 + 0.027 * k))
                cv2.line(studio, (kx, int(big_h * 0.53)), (kx, int(big_h * 0.62)), (170, 170, 170), 1)
            for k in range(3):  # screens
                x = int(big_w * (0.22 + 0.22 * k))
                cv2.rectangle(studio, (x, int(big_h * 0.2)),
                              (x + int(big_w * 0.16), int(big_h * 0.42)), (200, 205, 210), -1)
        else:
            cx = big_w // 2
            for f in (0.0, 0.15, 0.3):  # corridor perspective
                cv2.rectangle(studio, (int(cx - big_w * (0.5 - f)), int(big_h * (0.05 + f * 0.6))),
                              (int(cx + big_w * (0.5 - f)), int(big_h * (0.95 - f * 0.5))),
                              _col(_shade(wall, 0.5 + f)), 2)
            cv2.rectangle(studio, (int(cx - big_w * 0.1), int(big_h * 0.3)),
                          (int(cx + big_w * 0.1), int(big_h * 0.7)), (235, 230, 220), -1)
        people = [(float(rng.uniform(0.15, 0.75)), float(rng.uniform(-0.03, 0.03)), float(rng.random()))
                  for _ in range(int(rng.integers(1, 4)))]
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
                _figure(img, x - x0 + pad, ctx.h * 0.7 - y0 + pad, ctx.h * 0.55,
                        (60, 50, 45), (sw, -sw, 0.2 * sw, -0.2 * sw), head=(170, 140, 120))
            img += grain[int(g * ctx.fps) % len(grain)]
            gray = img.mean(axis=2, keepdims=True)
            img = gray + (img - gray) * 0.25  # washed-out, nearly monochrome
            return _u8(img)

        shots.append(_Shot(a, b, draw, label="behind the scenes"))
    return _Plan(shots)
