"""What a worker runs for one clip of a CPU stage (frames or features), on any engine.

A job is a plain JSON-able dict made by ``builders.pipeline.cpu``; its result is a dict with
``ok`` and ``output`` or ``error``. Every exception becomes a reason, never a crash, so the only
way a clip can stop a worker is by killing the process (a segfault in a decoder, the OOM killer).
An engine that retries a dead worker's clip counts its attempts in ``job["attempts_file"]``
(:func:`run_counted`): a clip that has killed its worker ``MAX_ATTEMPTS`` times ends as a failure
with that reason instead of killing workers forever.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from builders.locations import WorkDirUnreachable, is_url, join, names_in, read_bytes, remove, write_bytes, write_many
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
            output = _frames(job).model_dump(mode="json")
        else:
            if _EXTRACTOR is None:
                from builders.features import FeatureExtractor

                _EXTRACTOR = FeatureExtractor()
            track = Track.model_validate(job["track"])
            output = _EXTRACTOR.extract_file(Path(job["audio"]), track).model_dump(mode="json")
        result = {"ok": True, "output": output}
    except WorkDirUnreachable:
        raise  # not the clip's fault: stop the build, a rerun resumes
    except Exception as exc:  # noqa: BLE001 - a bad clip must not stop the build
        result = {"ok": False, "error": failure_reason(exc)}
    result.update(stage=job["stage"], id=job["id"], seconds=round(time.perf_counter() - started, 4))
    return result


def _frames(job: dict):
    """Analyse a clip's video into its frames folder. A URL folder (a work dir on an object store)
    gets the JPEGs once they are all made, each uploaded whole; JPEGs an earlier, longer run left
    there are removed. The driver stores the stage record only after this returns, so a record
    never points at frames that are not all there."""
    from builders.video import analyse_video

    target = job["frames_dir"]
    if not is_url(target):
        return analyse_video(Path(job["video"]), Path(target), **job["options"])
    with tempfile.TemporaryDirectory(prefix="mv4all-frames-") as tmp:
        visual = analyse_video(Path(job["video"]), Path(tmp), **job["options"])
        made = sorted(p.name for p in Path(tmp).glob("[0-9][0-9].jpg"))
        try:
            write_many({join(target, name): (Path(tmp) / name).read_bytes() for name in made})
            for name in names_in(target):
                if len(name) == 6 and name.endswith(".jpg") and name[:2].isdigit() and name not in made:
                    remove(join(target, name))
        except Exception as exc:
            raise WorkDirUnreachable(f"cannot store the frames of {job['id']} in the work dir: "
                                     f"{type(exc).__name__}: {exc}") from exc
    return visual


def _attempts_before(marker: str) -> int:
    try:
        return int((read_bytes(marker) or b"0").decode() or 0)
    except (OSError, ValueError):
        return 0


def run_counted(job: dict) -> dict:
    """:func:`run_job`, counting the attempt first in ``job["attempts_file"]`` (in the work dir, a
    folder or a URL that every worker reaches), so that the next attempt after a worker died
    mid-clip knows it is one."""
    marker = job["attempts_file"]
    before = _attempts_before(marker)
    if before >= MAX_ATTEMPTS:
        remove(marker)
        return {"ok": False, "stage": job["stage"], "id": job["id"], "seconds": 0.0,
                "error": f"the worker died {before} times while processing this clip (a crash in a decoder "
                         "or native library, or out of memory)"}
    write_bytes(marker, str(before + 1).encode())
    result = run_job(job)
    remove(marker)
    return result
