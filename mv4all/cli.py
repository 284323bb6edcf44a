"""The ``mv4all`` command: the composition root.

It is the only ``mv4all`` module that reaches into ``builders`` (and runs the ``train/``
and ``eval/`` recipes), and only inside command functions, so importing ``mv4all``
stays light and the dependency direction stays one-way.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Music-to-music-video description generation.")
push_app = typer.Typer(no_args_is_help=True, help="Publish a dataset (or model) to the Hugging Face Hub.")
app.add_typer(push_app, name="push")
console = Console(stderr=True)


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@app.command()
def sample(
    out: Path = typer.Argument(..., help="Folder to write the Music4All-layout sample corpus into."),
    clips: int = typer.Option(18, "--clips", "-n", min=1, help="Number of clips (the designed corpus has 18)."),
    seed: int = typer.Option(0, "--seed", help="Seed for ids and synthesis."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Processes used to render clips."),
) -> None:
    """Write a synthetic corpus in the exact Music4All layout, plus videos/ and ground_truth.jsonl."""
    from rich.progress import Progress

    from builders.sample.corpus import write_sample_corpus

    started = time.perf_counter()
    with Progress(console=console) as progress:
        task = progress.add_task("rendering clips", total=clips)
        truths = write_sample_corpus(out, clips=clips, seed=seed, workers=workers,
                                     progress=lambda: progress.advance(task))
    console.print(f"wrote {len(truths)} clips to {out} in {time.perf_counter() - started:.1f} s")


def _build_config(config, music4all, videos, out, work_dir, llm, workers, test_size, test_ratio, min_test,
                  split_by, static_threshold, limit, llm_options=None):
    from builders.config import load_config

    return load_config(
        config, music4all=music4all, videos=videos, out=out, work_dir=work_dir, llm=llm, workers=workers,
        limit=limit, **{"split.test_size": test_size, "split.test_ratio": test_ratio, "split.min_test": min_test,
                        "split.by": split_by, "static.threshold": static_threshold},
        **{f"llm_options.{k}": v for k, v in (llm_options or {}).items()},
    )


@app.command()
def build(
    music4all: Optional[Path] = typer.Option(None, "--music4all", help="Music4All root (CSVs, audios/, lyrics/)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Dataset folder to write."),
    videos: Optional[Path] = typer.Option(None, "--videos", help="Folder of {id}.mp4 music videos [MUSIC4ALL/videos]."),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="Work folder for resumable stage results [OUT.work]."),
    config: Optional[Path] = typer.Option(None, "--config", help="build.yaml with any of these options."),
    llm: Optional[str] = typer.Option(None, "--llm", help="LLM backend: offline (default), openai, openai-batch."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, help="Processes for frames/features."),
    test_size: Optional[int] = typer.Option(None, "--test-size", help="Test clips (approximate, hash-stable)."),
    test_ratio: Optional[float] = typer.Option(None, "--test-ratio", help="Test fraction [paper: 1446/56446]."),
    min_test: Optional[int] = typer.Option(None, "--min-test", help="At least this many test clips [4]."),
    split_by: Optional[str] = typer.Option(None, "--split-by", help="song (default) or artist (no artist overlap)."),
    static_threshold: Optional[float] = typer.Option(None, "--static-threshold", help="Static filter threshold [1.0]."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N clips (by id)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    vision_model: Optional[str] = typer.Option(None, "--vision-model", help="openai*: model for frame captions and MV type [gpt-4o-mini]."),
    text_model: Optional[str] = typer.Option(None, "--text-model", help="openai*: model for the text stages [gpt-4o-mini]."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="openai*: an OpenAI-compatible server (vLLM, Ollama, LM Studio)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="openai*: shared answer cache [~/.cache/mv4all/llm]."),
    detail: Optional[str] = typer.Option(None, "--detail", help="openai*: image detail, low (default), high or auto."),
    frames_mode: Optional[str] = typer.Option(None, "--frames-mode", help="openai*: clip (all frames, one request; default), frame (one request per frame) or contact (one contact sheet)."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", min=1, help="openai: requests in flight [4]."),
    rpm: Optional[int] = typer.Option(None, "--rpm", min=1, help="openai: at most this many requests per minute."),
    tpm: Optional[int] = typer.Option(None, "--tpm", min=1, help="openai: at most this many tokens per minute."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="openai*: seconds per HTTP request [120]."),
    max_retries: Optional[int] = typer.Option(None, "--max-retries", min=0, help="openai*: retries on 429/5xx/timeouts [6]."),
    max_reasks: Optional[int] = typer.Option(None, "--max-reasks", min=0, help="openai*: re-asks after an invalid answer [2]."),
    poll_interval: Optional[float] = typer.Option(None, "--poll-interval", help="openai-batch: seconds between status checks [30]."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Price the LLM stages (requests, tokens, $ standard vs batch) and spend nothing."),
    skip_cpu: bool = typer.Option(False, "--skip-cpu", help="With --dry-run: do not compute missing frames/features (the figure becomes an upper bound)."),
) -> None:
    """Build the music-to-MV-description dataset (every stage, resumable)."""
    from pydantic import ValidationError

    from builders.music4all import Music4AllError

    llm_options = {k: v for k, v in dict(
        vision_model=vision_model, text_model=text_model, base_url=base_url,
        cache_dir=str(cache_dir) if cache_dir else None, detail=detail, frames_mode=frames_mode,
        concurrency=concurrency, rpm=rpm, tpm=tpm, timeout=timeout, max_retries=max_retries, max_reasks=max_reasks,
        poll_interval=poll_interval).items() if v is not None}
    try:
        cfg = _build_config(config, music4all, videos, out, work_dir, llm, workers, test_size, test_ratio, min_test,
                            split_by, static_threshold, limit, llm_options)
        backend = _make_backend(cfg)
    except (ValidationError, ValueError, TypeError, OSError) as exc:
        _fail(f"invalid build configuration: {exc}", 2)
    if dry_run:
        try:
            _dry_run(cfg, backend, quiet, skip_cpu)
        except Music4AllError as exc:
            _fail(str(exc), 2)
        return
    check = getattr(backend, "check_ready", None)
    if callable(check):
        try:
            check()
        except RuntimeError as exc:
            _fail(str(exc), 2)
    try:
        result = _run_build(cfg, quiet, backend)
    except Music4AllError as exc:
        _fail(str(exc), 2)
    _print_build_summary(result)
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
        console.print(f"already finished in {cfg.work} (free): {done} stage results")


def _run_build(cfg, quiet: bool, backend=None):
    from builders.pipeline import build as run_build

    return run_build(cfg, backend=backend, console=console, progress=not quiet)


def _print_build_summary(result) -> None:
    table = Table(title=f"build {result.build_id}")
    table.add_column("config")
    table.add_column("train", justify="right")
    table.add_column("test", justify="right")
    for config, splits in result.rows.items():
        table.add_row(config, str(len(splits.get("train", []))), str(len(splits.get("test", []))))
    console.print(table)
    errors = [f for f in result.failures if f.kind == "error"]
    dropped = [f for f in result.failures if f.kind == "dropped"]
    console.print(f"dropped by static filter: {len(dropped)}; failed: {len(errors)} (see {result.out / 'failures.jsonl'})")
    for f in errors[:10]:
        console.print(f"  [red]{f.id}[/] {f.stage}: {f.reason}")
    computed = sum(result.computed.values())
    reused = sum(result.reused.values())
    console.print(f"stage results computed: {computed}, reused from {result.work}: {reused}; "
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
    console.print(f"dataset: {result.out}")


@push_app.command("dataset")
def push_dataset(
    folder: Path = typer.Argument(..., help="A built dataset folder."),
    repo_id: str = typer.Option(..., "--repo-id", help="Hub dataset repo, e.g. you/mv4all-sample."),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check and list what would be uploaded; send nothing."),
) -> None:
    """Upload a dataset folder (card, parquet, failures, build info) in one commit. Token from HF_TOKEN."""
    from mv4all.data import push_folder

    if not (folder / "README.md").is_file():
        _fail(f"{folder} is not a built dataset folder (no README.md)", 2)
    try:
        files = push_folder(folder, repo_id, repo_type="dataset", private=private, dry_run=dry_run)
    except ValueError as exc:
        _fail(str(exc), 2)
    verb = "would upload" if dry_run else "uploaded"
    console.print(f"{verb} {len(files)} files to dataset repo {repo_id}{' (private)' if private else ''}:")
    for rel in files:
        print(rel)


@app.command()
def demo(
    folder: Path = typer.Argument(Path("mv4all-demo"), help="Where to put the sample corpus, build and work files."),
    clips: int = typer.Option(18, "--clips", "-n", min=1),
    workers: int = typer.Option(2, "--workers", "-j", min=1),
) -> None:
    """Sample corpus -> offline build -> summary: the whole pipeline on this machine, no network."""
    from builders.config import BuildConfig
    from builders.sample.corpus import write_sample_corpus

    started = time.perf_counter()
    corpus = folder / "music4all"
    timings: dict[str, float] = {}
    if not (corpus / "ground_truth.jsonl").is_file():
        console.rule("1. sample corpus")
        t0 = time.perf_counter()
        write_sample_corpus(corpus, clips=clips, workers=workers)
        timings["sample"] = time.perf_counter() - t0
    console.rule("2. build dataset (offline backend)")
    t0 = time.perf_counter()
    cfg = BuildConfig(music4all=corpus, out=folder / "dataset", work_dir=folder / "work", workers=workers)
    result = _run_build(cfg, quiet=False)
    timings["build"] = time.perf_counter() - t0
    _print_build_summary(result)
    _print_demo_tour(folder, result, timings, time.perf_counter() - started)


def _print_demo_tour(folder: Path, result, timings: dict[str, float], total: float) -> None:
    rows = [r for split in result.rows["mv_description"].values() for r in split]
    table = Table(title="sample rows (mv_description)")
    for col in ("id", "song", "mv_type", "tempo", "key", "description"):
        table.add_column(col, overflow="fold")
    for r in rows[:8]:
        mf = r["music_features"]
        table.add_row(r["id"], r["song"], r["mv_type"], f"{mf['tempo']:.0f}", mf["key"],
                      r["mv_description"]["overview"][:90] + "...")
    console.print(table)
    where = Table(title="where things are", show_header=False)
    where.add_row("sample corpus", str(folder / "music4all"))
    where.add_row("dataset", f"{result.out}  (datasets.load_dataset('{result.out}'))")
    where.add_row("failures", str(result.out / "failures.jsonl"))
    where.add_row("build info", str(result.out / "build_info.json"))
    where.add_row("work dir", str(result.work))
    console.print(where)
    console.print("timing: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()) + f"; total {total:.1f} s")


@app.command("evaluate")
def evaluate_cmd(
    predictions: list[Path] = typer.Option(
        ..., "--predictions", "-p",
        help="Predictions JSONL (id, prediction[, reference] per line). Repeat for several rows of one table "
             "(BERTScore embeddings are shared)."),
    dataset: Optional[Path] = typer.Option(
        None, "--dataset", help="Built dataset folder: references (mv_description_text) by id for lines without one."),
    split: str = typer.Option("test", "--split", help="Dataset split holding the references."),
    bertscore_model: Optional[str] = typer.Option(
        None, "--bertscore-model", help="BERTScore model, hub id or local folder [roberta-large, the paper's]."),
    bertscore_layer: Optional[int] = typer.Option(
        None, "--bertscore-layer", help="Layer whose embeddings are matched [17 for roberta-large; else required]."),
    no_bertscore: bool = typer.Option(False, "--no-bertscore", help="BLEU and ROUGE-L only."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="BERTScore batch size."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device for BERTScore [cuda if available]."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the JSON report here [print it]."),
) -> None:
    """Score predictions: BLEU-1/4, ROUGE-L and BERTScore, x100 as in the paper's Table 1."""
    from mv4all.metrics import (BertScoreModelError, BertScorer, PredictionsError, load_prediction_sets,
                                metric_settings, report_json, results_table, score_many)

    try:  # the model is checked first: an unusable default fails before any reading or scoring
        scorer = None if no_bertscore else BertScorer(bertscore_model, bertscore_layer, device=device,
                                                      batch_size=batch_size)
        sets = load_prediction_sets(predictions, dataset=dataset, split=split)
    except (BertScoreModelError, PredictionsError) as exc:
        _fail(str(exc), 2)
    started = time.perf_counter()
    try:
        with console.status("scoring ...") as status:
            def progress(done: int, total: int) -> None:
                status.update(f"BERTScore: embedded {done}/{total} distinct texts")

            results = score_many({n: s.predictions for n, s in sets.items()},
                                 {n: s.references for n, s in sets.items()},
                                 bertscore=scorer is not None, scorer=scorer, progress=progress)
    except BertScoreModelError as exc:
        _fail(str(exc), 2)
    console.print(results_table(results))
    console.print(f"scored {sum(r.n for r in results.values())} predictions in {time.perf_counter() - started:.1f} s")
    sources = {n: {"predictions": str(s.path), "runs": s.runs} for n, s in sets.items()}
    text = json.dumps(report_json(results, metric_settings(scorer.spec if scorer else None), sources), indent=2)
    if out is None:
        print(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
        console.print(f"wrote {out}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
