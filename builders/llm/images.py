"""Frames as they travel to a vision model: base64 JPEG data URLs and contact sheets.

Frame JPEGs are sent byte-for-byte as the frames stage wrote them, so a request (and its
cache key) depends only on the stored frame, never on a re-encoder's version. Contact
sheets are the exception: they are drawn here, deterministically, and carry their own
layout in the cache key through the image bytes.
"""

from __future__ import annotations

import base64
import math
import struct
from dataclasses import dataclass

JPEG_PREFIX = "data:image/jpeg;base64,"


def data_url(jpeg: bytes) -> str:
    return JPEG_PREFIX + base64.b64encode(jpeg).decode("ascii")


def decode_data_url(url: str) -> bytes:
    if not url.startswith(JPEG_PREFIX):
        raise ValueError("not a base64 JPEG data URL")
    return base64.b64decode(url[len(JPEG_PREFIX):], validate=True)


def jpeg_size(jpeg: bytes) -> tuple[int, int]:
    """(width, height) read from the SOF marker: token counting must not decode every frame."""
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    i = 2
    while i + 4 <= len(jpeg):
        if jpeg[i] != 0xFF:
            i += 1
            continue
        marker = jpeg[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack(">H", jpeg[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", jpeg[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + length
    raise ValueError("JPEG without a frame header")


@dataclass(frozen=True)
class SheetLayout:
    cols: int
    rows: int
    cell_w: int
    cell_h: int

    @property
    def size(self) -> tuple[int, int]:
        return self.cols * self.cell_w, self.rows * self.cell_h


def sheet_layout(n: int, frame_w: int, frame_h: int, cell_width: int = 256, max_side: int | None = None) -> SheetLayout:
    """A grid whose sheet is about 16:9 (4 x 4 for fifteen 16:9 frames).

    A vision model first shrinks an image to fit its box (512 px for low detail), so the
    sheet's shape, not its pixel count, decides how large each frame survives; ``max_side``
    renders the sheet at that final size, so no bytes are sent that the model never sees.
    """
    aspect = frame_h / max(frame_w, 1)
    cols = max(1, min(n, math.ceil(math.sqrt(n * 16 / 9 * aspect))))
    rows = math.ceil(n / cols)
    if max_side:
        cell_width = min(cell_width, max_side // cols, int(max_side / (rows * aspect)))
    cell_h = max(1, round(cell_width * aspect))
    return SheetLayout(cols=cols, rows=rows, cell_w=max(1, cell_width), cell_h=cell_h)


def contact_sheet(frames: list[bytes], cell_width: int = 256, quality: int = 85,
                  max_side: int | None = None) -> tuple[bytes, SheetLayout]:
    """Tile a clip's frame JPEGs into one numbered JPEG (left to right, top to bottom)."""
    import cv2
    import numpy as np

    images = []
    for i, jpeg in enumerate(frames, start=1):
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"unreadable frame {i}")
        images.append(img)
    if not images:
        raise ValueError("no frames for a contact sheet")
    h0, w0 = images[0].shape[:2]
    layout = sheet_layout(len(images), w0, h0, cell_width, max_side)
    sheet = np.zeros((layout.rows * layout.cell_h, layout.cols * layout.cell_w, 3), np.uint8)
    for i, img in enumerate(images):
        cell = cv2.resize(img, (layout.cell_w, layout.cell_h), interpolation=cv2.INTER_AREA)
        label = str(i + 1)
        scale = max(layout.cell_h / 160, 0.4)
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(cell, (0, 0), (tw + 6, th + 8), (0, 0, 0), -1)
        cv2.putText(cell, label, (3, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
        r, c = divmod(i, layout.cols)
        sheet[r * layout.cell_h : (r + 1) * layout.cell_h, c * layout.cell_w : (c + 1) * layout.cell_w] = cell
    ok, buf = cv2.imencode(".jpg", sheet, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode the contact sheet")
    return buf.tobytes(), layout
