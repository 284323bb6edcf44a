"""The static filter: keep moving video, drop a single still or a slideshow of stills.

The decision rests on ``static_score`` (median within-shot motion, see
``builders.video.analysis``), so hard cuts between stills do not count as motion; a slow
zoom/pan over stills (Ken Burns) moves little, but is a montage, not a still, and is kept.
"""

from __future__ import annotations

from builders.video.records import VisualStats


def static_decision(visual: VisualStats, threshold: float = 1.0) -> tuple[bool, str]:
    """(keep, reason). Drops a single still and slideshows of stills; keeps moving video and
    slow zoom/pan (Ken Burns) montages."""
    score = visual.static_score
    shots = visual.shot_count
    if score >= threshold:
        if visual.zoom_pan:
            return True, ("kept: slow zoom/pan over still images "
                          f"(within-shot motion {score:.2f} >= {threshold:g}, {shots} shots)")
        return True, f"kept: moving video (within-shot motion {score:.2f} >= {threshold:g}, {shots} shots)"
    if visual.zoom_pan:
        return True, f"kept: zoom/pan montage detected although within-shot motion {score:.2f} < {threshold:g}"
    if shots <= 1:
        return False, f"dropped: a single still image (within-shot motion {score:.2f} < {threshold:g})"
    return False, f"dropped: slideshow of {shots} still images (within-shot motion {score:.2f} < {threshold:g})"
