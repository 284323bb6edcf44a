"""Frontal faces with OpenCV's bundled Haar cascade.

The builder counts faces on every sampled frame, and the sample-corpus renderer
(``builders.sample.video``) checks its drawn faces with this same detector, so a clip's
ground-truth ``has_face`` means what the builder will measure.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

MIN_FACE_SHARE = 0.13  # smallest face, as a share of the frame's shorter side

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


def detect_faces(gray: np.ndarray) -> np.ndarray:
    """Frontal faces at least ~13% of the shorter side of a grayscale frame (x, y, w, h rows)."""
    side = max(24, int(min(gray.shape) * MIN_FACE_SHARE))
    found = _face_cascade().detectMultiScale(_stretch(gray), scaleFactor=1.2, minNeighbors=6, minSize=(side, side))
    return np.asarray(found).reshape(-1, 4)
