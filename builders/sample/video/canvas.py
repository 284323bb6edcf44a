"""The drawing canvas of a synthetic MV: the palette, colour helpers, the per-clip context
(size, fps, spec, seeded rng, palette colour, beat length), and the plan a renderer
follows: a list of shots, each a function of time that draws one frame."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from builders.sample.specs import ClipSpec

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
        col = (np.asarray(top, np.float32)[None, None, :] * (1 - ramp)
               + np.asarray(bottom, np.float32)[None, None, :] * ramp)
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


def _segments(rng: np.random.Generator, duration: float, lo: float, hi: float,
              snap: float | None = None) -> list[tuple[float, float]]:
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
