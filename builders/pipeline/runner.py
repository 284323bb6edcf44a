"""The build: ingest -> frames -> static filter -> features -> LLM stages -> split -> export.

CPU stages (frames, features) run per clip on the build's engine (``builders.engines``: local
processes, or actors on a Ray cluster); each LLM stage is handed all of its pending clips at once
(``Backend.run``, which the Ray engine spreads over the cluster). Every result is stored in the
work dir under a key of (stage, version, backend, params hash), LLM results also under a
digest of the exact input they were made from, so a rerun reuses finished work and an
option change reruns only the stages it affects.

This module runs the stages in order and keeps the build's ledger; the stages themselves live in
``cpu`` (frames, static filter, features), ``llm`` (the LLM stages) and ``export`` (rows, split,
dataset folder).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from builders.config import BuildConfig
from builders.engines import get_engine
from builders.locations import is_url, join
from builders.music4all import Corpus, Music4AllError, read_music4all
from builders.pipeline.cpu import cpu_stage_keys, run_cpu_stages, run_static_filter
from builders.pipeline.export import export_dataset
from builders.pipeline.llm import run_llm_stages
from builders.pipeline.publish import check_remote
from builders.pipeline.result import BuildResult
from builders.stages import Backend, Usage
from builders.store import BuildLog, StageStore
from mv4all.safety import UnsafeOutput, check_id, claim_folder, folder_lock, inside
from mv4all.schema import FailureRecord


class Pipeline:
    """One build: its options, backend, stage store and log, and its ledger (the first blocking
    failure per clip, what was computed or reused, seconds and LLM usage per stage). The stage
    modules (``cpu``, ``llm``, ``export``) read it and record into it."""

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
        self.work = cfg.work  # local: the work dir, or this machine's scratch folder for a URL work dir
        self.store = StageStore(cfg.work_root)
        self._local_store = StageStore(self.work) if cfg.work_url else self.store
        self.failures: dict[str, FailureRecord] = {}  # first blocking failure per clip
        self.caption_failures: dict[str, FailureRecord] = {}
        self.computed: Counter = Counter()
        self.reused: Counter = Counter()
        self.stage_seconds: dict[str, float] = defaultdict(float)
        self.usage: dict[str, Usage] = {}
        self.keys: dict[str, tuple[str, str]] = {}  # CPU stage -> (store key, params hash), set by run()
        self.stage_models: dict[str, dict[str, str]] = {}  # LLM stage -> clip -> model (set by the LLM stages)
        self.stage_notes: dict[str, dict[str, dict]] = {}

    # ----------------------------------------------------------------- helpers

    def _scrub(self, reason: str) -> str:
        """Failure reasons are published: replace local folders by their role."""
        roots = [(self.cfg.videos_dir, "VIDEOS"), (Path(self.cfg.music4all), "MUSIC4ALL"), (self.work, "WORK")]
        if self.cfg.work_url:
            roots.append((self.cfg.work_url.rstrip("/"), "WORK"))
        for root, name in sorted(roots, key=lambda r: -len(str(r[0]))):
            forms = {str(root)} if is_url(str(root)) else {str(root), str(Path(root).resolve())}
            for form in forms:
                reason = reason.replace(form, name)
        return reason

    def fail(self, cid: str, stage: str, reason: str, kind: str = "error", music_too: bool = False) -> None:
        """Record a clip's first blocking failure (``music_too``: its music_caption row fails as well)."""
        record = FailureRecord(id=cid, stage=stage, kind=kind, reason=self._scrub(reason))
        self.failures.setdefault(cid, record)
        if music_too:
            self.caption_failures.setdefault(cid, record)
        self.log.write("failed" if kind == "error" else "dropped", stage=stage, id=cid, reason=reason)

    def progress(self) -> Progress:
        """The stage progress bars (off with ``progress=False``)."""
        return Progress(
            TextColumn("[bold]{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.show_progress,
            transient=False,
        )

    def frames_dir(self, cid: str) -> str:
        """Where a clip's frame JPEGs are stored (under the frames stage's key): a folder, or a URL."""
        if self.cfg.work_url:
            return join(self.cfg.work_url, "frames", self.keys["frames"][0], check_id(cid))
        return str(inside(self.work, "frames", self.keys["frames"][0], check_id(cid)))

    def attempts_file(self, stage: str, key: str, cid: str) -> str:
        """Where a worker counts its attempts at a clip (``cpu_jobs.run_counted``): local workers share
        this machine's disk, three round trips to an object store per clip cheaper; Ray's workers
        share only the work dir."""
        if self.cfg.work_url and self.cfg.engine == "ray":
            return self.store.attempts_path(stage, key, cid)
        return self._local_store.attempts_path(stage, key, cid)

    # ----------------------------------------------------------------- run

    def run(self) -> BuildResult:
        if self.dry_run:
            return self._run()
        out = self._claim_out()
        with folder_lock(out, f"mv4all build into {out}"):
            return self._run()

    def _claim_out(self) -> Path:
        """Refuse an --out that would mix with the inputs, or that is not ours; check it is writable.
        A URL --out is checked remotely and the dataset folder claimed is its copy in the work dir."""
        cfg = self.cfg
        if cfg.out_url:
            check_remote(cfg.out_url, overwrite=cfg.overwrite)
            return claim_folder(cfg.out_dir, "dataset", overwrite=False)
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
        self.engine = get_engine(cfg.engine, cfg.ray_address)
        if not self.dry_run:
            self.backend = self.engine.llm_backend(self.backend)
        try:
            mirror = join(cfg.work_url, "logs") if cfg.work_url else None
            self.log = BuildLog(self.work, run_id=uuid.uuid4().hex[:12], mirror=mirror)
        except BaseException:
            self.engine.close()
            raise
        attach = getattr(self.backend, "attach", None)
        if callable(attach):  # e.g. the Batch API ledger lives in the work dir
            attach(work=cfg.work_root, log=self.log.write)
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
            self.log.write("start", clips=len(ids), llm=self.backend.id, workers=cfg.workers, engine=cfg.engine)
            for f in corpus.failures:
                self.fail(f.id, f.stage, f.reason, music_too=True)
            self.keys = cpu_stage_keys(cfg)
            visuals, features = run_cpu_stages(self, corpus, ids)
            kept = run_static_filter(self, ids, visuals)
            lyrics = self._read_lyrics(corpus, ids)
            outputs = run_llm_stages(self, corpus, ids, visuals, features, kept, lyrics)
            self.store.flush()  # every record stored before the dataset says the build is done
            if self.dry_run:
                result = BuildResult(out=cfg.out_dir, work=self.work, build_id="dry-run", rows={},
                                     failures=sorted(self.failures.values(), key=lambda f: (f.kind, f.stage, f.id)),
                                     usage=self.usage, stage_seconds=dict(self.stage_seconds),
                                     computed=self.computed, reused=self.reused)
            else:
                result = export_dataset(self, corpus, ids, visuals, features, outputs)
        finally:
            try:
                self.store.close()
            finally:
                self.log.close()
                self.engine.close()
        result.seconds = time.perf_counter() - started
        return result

    def _read_lyrics(self, corpus: Corpus, ids: list[str]) -> dict[str, str]:
        """Each clip's lyrics ("" for an instrumental); a missing file fails the clip's MV row."""
        lyrics: dict[str, str] = {}
        for cid in ids:
            text = corpus.read_lyrics(cid)
            track = corpus.tracks[cid]
            if text is None:
                if track.instrumental:
                    text = ""
                else:
                    self.fail(cid, "lyrics_understanding", f"lyrics file not found: lyrics/{cid}.txt")
                    continue
            lyrics[cid] = text
        return lyrics


def build(cfg: BuildConfig, backend: Backend | None = None, console: Console | None = None,
          progress: bool = True) -> BuildResult:
    return Pipeline(cfg, backend=backend, console=console, progress=progress).run()
