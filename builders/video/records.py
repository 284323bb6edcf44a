"""What the builder measures on a clip's video: one record per sampled frame, one per clip.

These live with the builder, not in the dataset contract (``mv4all.schema``): they are the work
store's frames-stage records, read by the static filter and the offline captioner, and never a
column of a published row. Defaults on the later fields keep older work-store records valid.
"""

from __future__ import annotations

from pydantic import Field

from mv4all.schema import Record


class FrameStats(Record):
    """What was measured on one sampled frame."""

    t: float  # seconds from the clip start
    mean_rgb: list[float]  # 3 values, 0..255
    brightness: float  # mean luma, 0..255
    saturation: float  # mean HSV saturation, 0..1
    colours: list[str]  # named dominant colours, most prominent first
    motion: float  # within-shot change vs a frame a moment later (mean abs luma diff)
    cut_before: bool  # a shot boundary since the previous sampled frame
    faces: int  # faces found by OpenCV's bundled frontal-face cascade
    text_overlay: bool  # caption/lyric-like text band detected
    edge_density: float  # share of edge pixels (busy vs plain images)
    # Measured extras (defaults keep older producers valid). Colour/brightness numbers above
    # are taken over the picture area, i.e. without letterbox bars.
    letterbox: bool = False  # black bars above and below the picture
    bars: float = 0.0  # share of the frame height covered by those bars
    colourfulness: float = 0.0  # Hasler-Suesstrunk colourfulness M (0 grey .. ~100+ vivid)
    flat_colour: float = 0.0  # share of the picture in flat, saturated colour fields (cartoon-like)
    layering: float = 0.0  # share of luma variance explained by row means (horizontal bands: sky/land/water)
    face_size: float = 0.0  # height of the largest face / frame height (0 when no face)
    motion_in_shot: bool = True  # False when a cut (or the clip end) lies between the frame and its motion partner
    zoom: float = 0.0  # global scale change per second between the frame and its partner (+ zoom in)
    pan_x: float = 0.0  # apparent camera pan, frame widths per second (+ right)
    pan_y: float = 0.0  # apparent camera tilt, frame heights per second (+ down)
    residual: float = 0.0  # motion left after removing the global zoom/pan (same units as motion)


class VisualStats(Record):
    """Per-clip visual measurements; the static filter reads ``static_score``."""

    width: int
    height: int
    fps: float
    duration: float
    frames: list[FrameStats]
    static_score: float  # median within-shot motion; ~0 for stills and slideshows of stills
    shot_count: int
    zoom_pan: bool  # slow continuous zoom/pan over still images (Ken Burns)
    # Measured extras (defaults keep older producers valid).
    cut_times: list[float] = Field(default_factory=list)  # detected cuts, seconds from the clip start
    cuts_per_minute: float = 0.0
    zoom_pan_share: float = 0.0  # share of moving in-shot frame pairs explained by a rigid zoom/pan
    residual_motion: float = 0.0  # median in-shot motion left after removing global zoom/pan
    letterbox: bool = False  # most frames carry black bars above and below
    brightness: float = 0.0  # median frame brightness, 0..255
    saturation: float = 0.0  # median frame saturation, 0..1
    colourfulness: float = 0.0  # median Hasler-Suesstrunk colourfulness
    flat_colour: float = 0.0  # median share of flat, saturated colour fields
    layering: float = 0.0  # median horizontal-band structure score
    face_share: float = 0.0  # share of sampled frames with at least one face
    text_share: float = 0.0  # share of sampled frames with a text overlay
    shake: float = 0.0  # handheld jitter: high-frequency global shift, % of frame width per frame step
    flicker: float = 0.0  # high-frequency brightness change within shots (luma levels): flashing lights
    motion_periodicity: float = 0.0  # 0..1 autocorrelation peak of the motion-energy series
    motion_bpm: float | None = None  # rate of that periodic motion, events per minute
