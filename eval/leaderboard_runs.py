"""Predictions for every leaderboard row: train the runs a table names but that do not exist yet
(``train_missing``, ``parallel`` at a time, each worker also generating its rows), then generate
what is not cached. Predictions are cached per (run, eval inputs, decoding) under
``out_dir/predictions/``, so adding a row generates only that row."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

from eval.leaderboard_config import REPO, Config, LeaderboardError, Row, resolve_path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9+._-]+", "_", text).strip("_")[:60] or "row"


def cache_key(row: Row, decoding: dict) -> str:
    """Same run + same eval inputs + same decoding = same predictions, whatever the row is called."""
    source = str(Path(row.run_dir).resolve()) if row.run_dir else str(row.base_model)
    # run.json changes whenever the run is retrained (timestamp, loss), so stale predictions are never served.
    run_file = Path(row.run_dir) / "run.json" if row.run_dir else None
    trained = hashlib.sha256(run_file.read_bytes()).hexdigest() if run_file and run_file.is_file() else None
    blob = json.dumps({"source": source, "run": trained, "eval_inputs": row.eval_inputs, "decoding": decoding},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cache_path(cfg: Config, row: Row, decoding: dict) -> Path:
    source = row.run_dir.name if row.run_dir else Path(str(row.base_model)).name
    return (cfg.out_dir / "predictions"
            / f"{_slug(source)}__{_slug(row.eval_inputs or 'train')}__{cache_key(row, decoding)}.jsonl")


def _missing_run_args(cfg: Config, row: Row) -> tuple[Path, int, dict]:
    """(config, stage, overrides) that train a stage-2 run a row needs but that does not exist yet."""
    spec = cfg.train_missing or {}
    if not row.train_inputs:
        raise LeaderboardError(f"row {row.name!r}: {row.run_dir} does not exist and the row has no train_inputs")
    config = resolve_path(spec.get("config", "train/configs/tiny.yaml"), REPO)
    overrides = dict(spec.get("overrides") or {})
    for key in ("dataset", "audio_root", "language_model", "audio_encoder_path", "init_from"):
        if overrides.get(key) and resolve_path(overrides[key], cfg.base).exists():
            overrides[key] = str(resolve_path(overrides[key], cfg.base))
    overrides.update(output_dir=str(row.run_dir), inputs=row.train_inputs, disable_tqdm=True)
    return config, int(spec.get("stage", 2)), overrides


def _train_one(config: Path, stage: int, overrides: dict, then: tuple = ()) -> tuple[str, list[str]]:
    """Train one run, then generate the predictions of its table rows ``then`` (``(cfg, row)`` pairs)
    in the same process, while the other runs still train. Returns the run and the files written."""
    from train import sft

    run = str(sft.train(config, stage, overrides))
    written = []
    for cfg, row in then:
        row.eval_inputs = row.eval_inputs or row.train_inputs
        path = cache_path(cfg, row, row_decoding(cfg, row).record())
        path.parent.mkdir(parents=True, exist_ok=True)
        generate_row(cfg, row, path, lambda message: print(message, flush=True))
        written.append(str(path))
    return run, written


def train_missing_runs(cfg: Config, log: Callable[[str], None], generate: bool = False) -> tuple[list[Path], set[Path]]:
    """Train every run the rows name that does not exist yet, ``parallel`` of them at a time.

    With ``generate`` each worker also writes the predictions of its run's rows right after
    training (one model load, overlapped with the runs still training). Returns the trained runs
    and the prediction files written.
    """
    missing: dict[Path, list[Row]] = {}
    for row in cfg.rows:
        if row.run_dir is not None and not row.run_dir.is_dir():
            if not cfg.train_missing:
                raise LeaderboardError(f"row {row.name!r}: run directory {row.run_dir} does not exist")
            missing.setdefault(row.run_dir, []).append(row)
    jobs = []
    for run_dir, rows in missing.items():
        config, stage, overrides = _missing_run_args(cfg, rows[0])
        log(f"training missing run {run_dir} (inputs {rows[0].train_inputs})")
        jobs.append((config, stage, overrides, tuple((cfg, row) for row in rows) if generate else ()))
    parallel = min(int((cfg.train_missing or {}).get("parallel", 1)), len(jobs))
    if parallel <= 1:
        results = [_train_one(*job) for job in jobs]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a fresh interpreter per worker (torch and fork do not mix); each run sets its own threads
        with ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_train_one, *zip(*jobs)))
    return [Path(run) for run, _ in results], {Path(p) for _, written in results for p in written}


def row_decoding(cfg: Config, row: Row):
    """A row's decoding: its run's ``generation_config.json`` (sized to its targets), then the table's ``decoding:``."""
    from mv4all.describe import Decoding, load_generation_config

    own = load_generation_config(row.run_dir) if row.run_dir is not None and row.run_dir.is_dir() else None
    return (own or Decoding()).replace(**cfg.decoding)


def generate_row(cfg: Config, row: Row, path: Path, log: Callable[[str], None]) -> None:
    from mv4all.describe import Describer, predict_split

    decoding = row_decoding(cfg, row)
    if row.run_dir is not None:
        describer = Describer.from_run(row.run_dir, inputs=row.eval_inputs, decoding=decoding, device=cfg.device,
                                       run_name=row.run_dir.name)
    else:
        describer = Describer.from_base_llm(row.base_model, inputs=row.eval_inputs or "2+3+4", decoding=decoding,
                                            device=cfg.device, run_name=f"base:{Path(str(row.base_model)).name}")
    started = time.perf_counter()
    predict_split(describer, cfg.dataset, path, split=cfg.split, audio_root=cfg.audio_root)
    log(f"{row.name}: predictions in {time.perf_counter() - started:.1f} s -> {path}")


def ensure_predictions(cfg: Config, reference_ids: set[str], fresh: set[Path], no_cache: bool,
                       log: Callable[[str], None]) -> tuple[dict[str, Path], dict[str, dict], list[str]]:
    """Each row's predictions file, generated unless a complete one is cached (``fresh``: written by
    the workers that trained the runs). Fills in rows' inputs from their runs. Returns (row -> path,
    row -> decoding, rows whose predictions were (re)computed)."""
    from mv4all.metrics import read_predictions

    generated: list[str] = []
    decodings: dict[str, dict] = {}
    paths: dict[str, Path] = {}
    done: set[Path] = set()
    for row in cfg.rows:
        if row.predictions is not None:
            paths[row.name] = row.predictions
            continue
        if row.run_dir is not None and (row.train_inputs is None or row.backbone is None):
            from mv4all.model.run import read_run_info

            info = read_run_info(row.run_dir)
            row.backbone = row.backbone or info.get("backbone") or "mv4all"  # runs before the field: mv4all
            if row.train_inputs is None:
                row.train_inputs = info.get("inputs")
                if int(info.get("stage", 2)) == 1 and row.trained_label is None:
                    row.trained_label = f"stage 1 only ({row.train_inputs}, captions)"
        if row.eval_inputs is None:
            row.eval_inputs = row.train_inputs or "2+3+4"
        decoding = decodings[row.name] = row_decoding(cfg, row).record()
        path = cache_path(cfg, row, decoding)
        paths[row.name] = path
        if path in done:
            continue
        if path in fresh:  # written by the worker that trained the run
            generated.append(row.name)
            done.add(path)
            continue
        if no_cache and path.exists():
            path.unlink()
        have = set()
        if path.is_file():
            have = {p.id for p in read_predictions(path)} if path.stat().st_size else set()
        if have != reference_ids:
            path.parent.mkdir(parents=True, exist_ok=True)
            generate_row(cfg, row, path, log)
            generated.append(row.name)
        done.add(path)
    return paths, decodings, generated
