"""``mv4all sample`` (the synthetic Music4All-layout corpus) and ``mv4all build`` (the dataset
pipeline, or with ``--dry-run`` its LLM price), plus the build summary the demo prints too."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from mv4all.cli.common import app, console, fail


@app.command()
def sample(
    out: Path = typer.Argument(..., help="Folder to write the Music4All-layout sample corpus into."),
    clips: int = typer.Option(18, "--clips", "-n", min=1, help="Number of clips (the designed corpus has 18)."),
    seed: int = typer.Option(0, "--seed", help="Seed for ids and synthesis."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Processes used to render clips."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty folder that is not a sample "
                                                              "corpus (files of the same names are replaced)."),
) -> None:
    """Write a synthetic corpus in the exact Music4All layout, plus videos/ and ground_truth.jsonl."""
    from rich.progress import Progress

    from builders.sample.corpus import write_sample_corpus

    started = time.perf_counter()
    from mv4all.safety import UnsafeOutput, claim_folder

    try:
        claim_folder(out, "sample corpus", overwrite=overwrite, legacy=("ground_truth.jsonl",))
    except UnsafeOutput as exc:
        fail(str(exc), 2)
    with Progress(console=console) as progress:
        task = progress.add_task("rendering clips", total=clips)
        truths = write_sample_corpus(out, clips=clips, seed=seed, workers=workers,
                                     progress=lambda: progress.advance(task))
    console.print(f"wrote {len(truths)} clips to {out} in {time.perf_counter() - started:.1f} s")


def _build_config(config, music4all, videos, out, work_dir, llm, workers, test_size, test_ratio, min_test,
                  split_by, static_threshold, limit, llm_options=None, engine=None, ray_address=None,
                  scratch_dir=None):
    from builders.config import load_config

    return load_config(
        config, music4all=music4all, videos=videos, out=out, work_dir=work_dir, llm=llm, workers=workers,
        limit=limit, engine=engine, ray_address=ray_address, scratch_dir=scratch_dir,
        **{"split.test_size": test_size, "split.test_ratio": test_ratio, "split.min_test": min_test,
           "split.by": split_by, "static.threshold": static_threshold},
        **{f"llm_options.{k}": v for k, v in (llm_options or {}).items()},
    )


@app.command()
def build(
    music4all: Optional[Path] = typer.Option(None, "--music4all", help="Music4All root (CSVs, audios/, lyrics/)."),
    out: Optional[str] = typer.Option(
        None, "--out", "-o", help="Dataset folder to write, or an fsspec URL to upload it to (s3://, gs://, ...)."),
    videos: Optional[Path] = typer.Option(
        None, "--videos", help="Folder of {id}.mp4 music videos (.webm/.mkv/.mov also found) [MUSIC4ALL/videos]."),
    work_dir: Optional[str] = typer.Option(
        None, "--work-dir",
        help="Work folder for resumable stage results, or an fsspec URL every worker reaches [OUT.work]."),
    scratch_dir: Optional[Path] = typer.Option(
        None, "--scratch-dir",
        help="With a URL --work-dir: this machine's folder for the log and the dataset before upload "
             "[~/.cache/mv4all/scratch/...]."),
    config: Optional[Path] = typer.Option(None, "--config", help="build.yaml with any of these options."),
    llm: Optional[str] = typer.Option(None, "--llm", help="LLM backend: offline (default), openai, openai-batch."),
    workers: Optional[int] = typer.Option(
        None, "--workers", "-j", min=1,
        help="Processes for frames/features [1]; with --engine ray, at most this many actors [one per CPU]."),
    engine: Optional[str] = typer.Option(
        None, "--engine", help="Where per-clip work runs: local (default) or ray (pip install \"mv4all[ray]\")."),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="ray: the cluster to join (auto, ray://HOST:PORT) [a local Ray on this machine]."),
    test_size: Optional[int] = typer.Option(None, "--test-size", help="Test clips (approximate, hash-stable)."),
    test_ratio: Optional[float] = typer.Option(None, "--test-ratio", help="Test fraction [paper: 1446/56446]."),
    min_test: Optional[int] = typer.Option(None, "--min-test", help="At least this many test clips [4]."),
    split_by: Optional[str] = typer.Option(None, "--split-by", help="song (default) or artist (no artist overlap)."),
    static_threshold: Optional[float] = typer.Option(None, "--static-threshold", help="Static filter threshold [1.0]."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N clips (by id)."),
    overwrite: bool = typer.Option(
        False, "--overwrite",
        help="Write into a non-empty --out that is not an mv4all dataset (its other files are kept)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    vision_model: Optional[str] = typer.Option(
        None, "--vision-model", help="openai*: model for frame captions and MV type [gpt-4o-mini]."),
    text_model: Optional[str] = typer.Option(
        None, "--text-model", help="openai*: model for the text stages [gpt-4o-mini]."),
    base_url: Optional[str] = typer.Option(
        None, "--base-url", help="openai*: an OpenAI-compatible server (vLLM, Ollama, LM Studio)."),
    cache_dir: Optional[str] = typer.Option(
        None, "--cache-dir", help="openai*: shared answer cache, a folder or an fsspec URL [~/.cache/mv4all/llm]."),
    detail: Optional[str] = typer.Option(None, "--detail", help="openai*: image detail, low (default), high or auto."),
    frames_mode: Optional[str] = typer.Option(
        None, "--frames-mode",
        help="openai*: clip (all frames, one request; default), frame (one request per frame) "
             "or contact (one contact sheet)."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", min=1, help="openai: requests in flight [4]."),
    rpm: Optional[int] = typer.Option(None, "--rpm", min=1, help="openai: at most this many requests per minute."),
    tpm: Optional[int] = typer.Option(None, "--tpm", min=1, help="openai: at most this many tokens per minute."),
    rate_window: Optional[float] = typer.Option(
        None, "--rate-window", min=0.1,
        help="openai: seconds over which --rpm/--tpm hold (scaled); 1 also smooths bursts [60]."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="openai*: seconds per HTTP request [120]."),
    max_retries: Optional[int] = typer.Option(
        None, "--max-retries", min=0, help="openai*: retries on 429/5xx/timeouts [6]."),
    max_reasks: Optional[int] = typer.Option(
        None, "--max-reasks", min=0, help="openai*: re-asks after an invalid answer [2]."),
    poll_interval: Optional[float] = typer.Option(
        None, "--poll-interval", help="openai-batch: seconds between status checks [30]."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Price the LLM stages (requests, tokens, $ standard vs batch) and spend nothing."),
    skip_cpu: bool = typer.Option(
        False, "--skip-cpu",
        help="With --dry-run: do not compute missing frames/features (the figure becomes an upper bound)."),
) -> None:
    """Build the music-to-MV-description dataset (every stage, resumable)."""
    from pydantic import ValidationError

    from builders.engines import EngineError
    from builders.locations import LocationError, WorkDirUnreachable
    from builders.music4all import Music4AllError
    from builders.pipeline import BuildError
    from mv4all.safety import UnsafeOutput

    llm_options = {k: v for k, v in dict(
        vision_model=vision_model, text_model=text_model, base_url=base_url,
        cache_dir=str(cache_dir) if cache_dir else None, detail=detail, frames_mode=frames_mode,
        concurrency=concurrency, rpm=rpm, tpm=tpm, rate_window=rate_window, timeout=timeout,
        max_retries=max_retries, max_reasks=max_reasks,
        poll_interval=poll_interval).items() if v is not None}
    try:
        cfg = _build_config(config, music4all, videos, out, work_dir, llm, workers, test_size, test_ratio, min_test,
                            split_by, static_threshold, limit, llm_options, engine, ray_address, scratch_dir)
        if overwrite:
            cfg.overwrite = True
        backend = _make_backend(cfg)
    except (ValidationError, ValueError, TypeError, OSError) as exc:
        fail(f"invalid build configuration: {exc}", 2)
    if dry_run:
        try:
            _dry_run(cfg, backend, quiet, skip_cpu)
        except Music4AllError as exc:
            fail(str(exc), 2)
        return
    check = getattr(backend, "check_ready", None)
    if callable(check):
        try:
            check()
        except RuntimeError as exc:
            fail(str(exc), 2)
    try:
        result = run_build(cfg, quiet, backend)
    except (Music4AllError, UnsafeOutput, LocationError) as exc:
        fail(str(exc), 2)
    except EngineError as exc:
        fail(str(exc), 2)
    except (BuildError, WorkDirUnreachable) as exc:
        fail(f"{exc}" + ("; a rerun resumes" if isinstance(exc, WorkDirUnreachable) else ""), 1)
    print_build_summary(result)
    summary = getattr(backend, "summary", None)
    if callable(summary):
        console.print(summary())


def _make_backend(cfg):
    from builders.llm import get_backend

    return get_backend(cfg.llm, **cfg.llm_options)


def _dry_run(cfg, backend, quiet: bool, skip_cpu: bool) -> None:
    from builders.llm.dryrun import DryRunBackend, summary_lines
    from builders.pipeline import Pipeline

    if not hasattr(backend, "requests_for"):
        console.print(f"the {backend.id} backend sends no paid requests: a build costs $0")
        return
    wrapper = DryRunBackend(backend)
    pipe = Pipeline(cfg, backend=wrapper, console=console, progress=not quiet, dry_run="reuse" if skip_cpu else "run")
    pipe.run()
    done = sum(pipe.reused[s] for s in wrapper.estimates) if wrapper.estimates else 0
    console.print(wrapper.table(unanalysed=len(pipe.unanalysed)))
    for line in summary_lines(wrapper, unanalysed=len(pipe.unanalysed)):
        console.print(line, soft_wrap=True)
    if done:
        console.print(f"already finished in {cfg.work_root} (free): {done} stage results")


def run_build(cfg, quiet: bool, backend=None):
    """The build with the command's console and progress bars (``mv4all build`` and ``mv4all demo``)."""
    from builders import pipeline

    return pipeline.build(cfg, backend=backend, console=console, progress=not quiet)


def print_build_summary(result) -> None:
    table = Table(title=f"build {result.build_id}")
    table.add_column("config")
    table.add_column("train", justify="right")
    table.add_column("test", justify="right")
    for config, splits in result.rows.items():
        table.add_row(config, str(len(splits.get("train", []))), str(len(splits.get("test", []))))
    console.print(table)
    errors = [f for f in result.failures if f.kind == "error"]
    dropped = [f for f in result.failures if f.kind == "dropped"]
    console.print(f"dropped by static filter: {len(dropped)}; failed: {len(errors)} "
                  f"(see {result.out / 'failures.jsonl'})")
    for f in errors[:10]:
        console.print(f"  [red]{f.id}[/] {f.stage}: {f.reason}")
    if not any(result.rows.get("mv_description", {}).values()):
        console.print("[yellow]warning: no clip reached the mv_description config (no videos, or every MV was "
                      "dropped as static): the dataset has only music_caption, which load_dataset serves by "
                      "default[/]")
    computed = sum(result.computed.values())
    reused = sum(result.reused.values())
    console.print(f"stage results computed: {computed}, reused from {result.work_url or result.work}: {reused}; "
                  f"{result.seconds:.1f} s")
    for stage, usage in result.usage.items():
        if usage.requests:
            cost = "n/a" if usage.cost_usd is None else f"${usage.cost_usd:.4f}"
            console.print(f"  {stage}: {usage.requests} requests, {usage.input_tokens} in / "
                          f"{usage.output_tokens} out tokens, {cost}")
    paid = [u for u in result.usage.values() if u.requests]
    if paid:
        costs = [u.cost_usd for u in paid]
        total = "unknown (a model without a price)" if None in costs else f"${sum(costs):.4f}"
        console.print(f"  LLM total: {sum(u.requests for u in paid)} requests, "
                      f"{sum(u.input_tokens for u in paid)} in / {sum(u.output_tokens for u in paid)} out tokens, "
                      f"{total} actually spent")
    console.print(f"dataset: {result.out}" + (f", uploaded to {result.published}" if result.published else ""))
