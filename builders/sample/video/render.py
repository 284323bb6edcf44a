"""``render_video``: pick the clip's shot plan (its video kind, else its MV type), draw every
frame, encode H.264 (plus the audio, if given), check drawn faces with the builder's own
detector, and return the ground truth the builder's tests compare against."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from builders.sample.specs import ClipSpec
from builders.sample.video.canvas import _Ctx, _rgb, _u8
from builders.sample.video.photos import _plan_ken_burns, _plan_slideshow, _plan_still
from builders.sample.video.soundtrack import _mux_audio, _open_audio
from builders.sample.video.styles_imagery import (
    _plan_abstract,
    _plan_animation,
    _plan_cinematic,
    _plan_nature,
    _plan_story,
)
from builders.sample.video.styles_performance import _plan_bts, _plan_dance, _plan_live, _plan_lyric
from builders.video.faces import detect_faces
from mv4all.schema import CLIP_SECONDS

WIDTH, HEIGHT, FPS = 320, 180, 12


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


def render_video(spec: ClipSpec, path: Path, duration: float = CLIP_SECONDS, audio_path: Path | None = None,
                 *, fps: int = FPS, size: tuple[int, int] = (WIDTH, HEIGHT)) -> dict:
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

    verified = [si for si, hits in face_checks.items()
                if hits and sum(1 for c in hits if c > 0) >= max(1, len(hits) // 2)]
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
