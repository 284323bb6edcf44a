"""What a worker runs for one clip of a CPU stage (frames or features), on any engine.

A job is a plain JSON-able dict made by ``builders.pipeline.cpu``; its result is a dict with
``ok`` and ``output`` or ``error``. Every exception becomes a reason, never a crash, so the only
way a clip can stop a worker is by killing the process (a segfault in a decoder, the OOM killer).
An engine that retries a dead worker's clip counts its attempts in ``job["attempts_file"]``
(:func:`run_counted`): a clip that has killed its worker ``MAX_ATTEMPTS`` times ends as a failure
with that reason instead of killing workers forever.
"""

from __future__ import annotations

import time
from pathlib import Path

from builders.pipeline.result import failure_reason
from mv4all.schema import Track

MAX_ATTEMPTS = 3  # worker deaths on one clip before it is recorded as failed

_EXTRACTOR = None


def worker_init(load_features: bool = False) -> None:
    """Pin threads to 1 and, when the worker will compute features, load madmom once and
    warm it up (first-call imports and ONNX set-up) so clip timings are steady."""
    global _EXTRACTOR
    from builders.features import limit_threads

    limit_threads()
    import cv2

    cv2.setNumThreads(1)  # OpenCV keeps its own pool and ignores the variables limit_threads sets
    if load_features and _EXTRACTOR is None:
        import numpy as np

        from builders.features import FeatureExtractor

        _EXTRACTOR = FeatureExtractor()
        rng = np.random.default_rng(0)
        _EXTRACTOR.extract((0.1 * rng.standard_normal(44100 * 4)).astype(np.float32))


def run_job(job: dict) -> dict:
    """One clip's frames or features."""
    global _EXTRACTOR
    started = time.perf_counter()
    try:
        if job["stage"] == "frames":
            from builders.video import analyse_video

            visual = analyse_video(Path(job["video"]), Path(job["frames_dir"]), **job["options"])
            output = visual.model_dump(mode="json")
        else:
            if _EXTRACTOR is None:
                from builders.features import FeatureExtractor

                _EXTRACTOR = FeatureExtractor()
            track = Track.model_validate(job["track"])
            output = _EXTRACTOR.extract_file(Path(job["audio"]), track).model_dump(mode="json")
        result = {"ok": True, "output": output}
    except Exception as exc:  # noqa: BLE001 - a bad clip must not stop the build
        result = {"ok": False, "error": failure_reason(exc)}
    result.update(stage=job["stage"], id=job["id"], seconds=round(time.perf_counter() - started, 4))
    return result


def run_counted(job: dict) -> dict:
    """:func:`run_job`, counting the attempt first in ``job["attempts_file"]`` (a shared work dir),
    so that the next attempt after a worker died mid-clip knows it is one."""
    marker = Path(job["attempts_file"])
    try:
        before = int(marker.read_text() or 0)
    except (OSError, ValueError):
        before = 0
    if before >= MAX_ATTEMPTS:
        marker.unlink(missing_ok=True)
        return {"ok": False, "stage": job["stage"], "id": job["id"], "seconds": 0.0,
                "error": f"the worker died {before} times while processing this clip (a crash in a decoder "
                         "or native library, or out of memory)"}
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(before + 1))
    result = run_job(job)
    marker.unlink(missing_ok=True)
    return result
