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

import rich.markup
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Music-to-music-video description generation.")
push_app = typer.Typer(no_args_is_help=True, help="Publish a dataset (or model) to the Hugging Face Hub.")
app.add_typer(push_app, name="push")
console = Console(stderr=True)


def _check_writable(path: Path, option: str) -> None:
    """Fail now (one line) if ``path`` could not be written later, after the expensive work."""
    import tempfile

    if path.is_dir():
        _fail(f"{option} {path} is a folder: give a file path", 2)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=path.parent, prefix=".mv4all-probe-").close()
    except OSError as exc:
        _fail(f"{option} {path}: cannot write there ({exc.strerror or exc})", 2)


def _fail(message: str, code: int = 1) -> None:
    """One line on stderr (never wrapped: paths in it stay whole), then exit with ``code``."""
    console.print(f"[bold red]error:[/] {rich.markup.escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


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
        _fail(str(exc), 2)
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
    videos: Optional[Path] = typer.Option(None, "--videos", help="Folder of {id}.mp4 music videos (.webm/.mkv/.mov also found) [MUSIC4ALL/videos]."),
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
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty --out that is not an mv4all dataset (its other files are kept)."),
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
    from builders.pipeline import BuildError
    from mv4all.safety import UnsafeOutput

    llm_options = {k: v for k, v in dict(
        vision_model=vision_model, text_model=text_model, base_url=base_url,
        cache_dir=str(cache_dir) if cache_dir else None, detail=detail, frames_mode=frames_mode,
        concurrency=concurrency, rpm=rpm, tpm=tpm, timeout=timeout, max_retries=max_retries, max_reasks=max_reasks,
        poll_interval=poll_interval).items() if v is not None}
    try:
        cfg = _build_config(config, music4all, videos, out, work_dir, llm, workers, test_size, test_ratio, min_test,
                            split_by, static_threshold, limit, llm_options)
        if overwrite:
            cfg.overwrite = True
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
    except (Music4AllError, UnsafeOutput) as exc:
        _fail(str(exc), 2)
    except BuildError as exc:
        _fail(str(exc), 1)
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
    if not any(result.rows.get("mv_description", {}).values()):
        console.print("[yellow]warning: no clip reached the mv_description config (no videos, or every MV was "
                      "dropped as static): the dataset has only music_caption, which load_dataset serves by "
                      "default[/]")
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


@push_app.command("model")
def push_model(
    run_dir: Path = typer.Argument(..., help="A training run directory (train/sft.py output)."),
    repo_id: str = typer.Option(..., "--repo-id", help="Hub model repo, e.g. you/mv4all-stage2."),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check and list what would be uploaded; send nothing."),
) -> None:
    """Upload a run (card, run.json, config, generation config, weights, tokenizer, logs) in one commit.

    Only the files a run consists of are sent; checkpoints and anything else in the folder stay local.
    """
    from mv4all.data import push_folder

    if not (run_dir / "run.json").is_file() or not (run_dir / "README.md").is_file():
        _fail(f"{run_dir} is not a finished training run (no run.json / README.md)", 2)
    from mv4all.model.run import run_files

    files, others = run_files(run_dir)
    skipped = sorted({rel.split("/")[0] + ("/" if "/" in rel else "") for rel in others})
    if skipped:
        console.print(f"not part of the run, not uploaded: {', '.join(skipped)}", markup=False, soft_wrap=True)
    try:
        files = push_folder(run_dir, repo_id, repo_type="model", private=private, dry_run=dry_run, files=files,
                            commit_message="Upload mv4all model")
    except ValueError as exc:
        _fail(str(exc), 2)
    verb = "would upload" if dry_run else "uploaded"
    console.print(f"{verb} {len(files)} files to model repo {repo_id}{' (private)' if private else ''}:")
    for rel in files:
        print(rel)


@app.command()
def demo(
    folder: Path = typer.Argument(Path("mv4all-demo"), help="Where to put the sample corpus, build and work files."),
    clips: int = typer.Option(40, "--clips", "-n", min=1, help="Sample clips (40: at least 8 test clips)."),
    workers: int = typer.Option(2, "--workers", "-j", min=1),
    min_test: int = typer.Option(8, "--min-test", min=1, help="At least this many test clips."),
    train: bool = typer.Option(True, "--train/--no-train", help="Train the demo model and score its Table 1."),
    quick: bool = typer.Option(False, "--quick", help="CI size: a 2-layer model, a few steps; checks the files, "
                                                      "not the learning."),
) -> None:
    """Sample corpus -> offline build -> a small model trained in two stages -> Table 1: all on this machine."""
    from builders.config import BuildConfig
    from builders.sample.corpus import write_sample_corpus
    from mv4all.safety import UnsafeOutput, claim_folder

    try:  # the demo deletes and rewrites its own subfolders: never in a folder that is not a demo's
        claim_folder(folder, "demo", legacy=("music4all", "dataset"), option=None)
    except UnsafeOutput as exc:
        _fail(str(exc), 2)
    started = time.perf_counter()
    corpus = folder / "music4all"
    timings: dict[str, float] = {}
    if not (corpus / "ground_truth.jsonl").is_file():
        console.rule(f"1. sample corpus ({clips} synthetic clips: audio, lyrics, video)")
        t0 = time.perf_counter()
        with _progress() as progress:
            task = progress.add_task("render", total=clips)
            write_sample_corpus(corpus, clips=clips, workers=workers, progress=lambda: progress.advance(task))
        timings["sample corpus"] = time.perf_counter() - t0
    console.rule("2. build the dataset (offline backend: heuristic text, labelled as such)")
    t0 = time.perf_counter()
    cfg = BuildConfig(music4all=corpus, out=folder / "dataset", work_dir=folder / "work", workers=workers,
                      split={"min_test": min_test})
    result = _run_build(cfg, quiet=False)
    timings["build"] = time.perf_counter() - t0
    _print_build_summary(result)
    _print_demo_tour(folder, result)
    ok = True
    if train:
        ok = _demo_learning(folder, result.out, corpus, quick, timings)
    console.rule("timing")
    for name, seconds in timings.items():
        console.print(f"  {name:<22} {seconds:7.1f} s")
    console.print(f"  {'total':<22} {time.perf_counter() - started:7.1f} s")
    if not ok:
        _fail("the demo model did not reach its learning targets (see above)", 1)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def _demo_learning(folder: Path, dataset: Path, corpus: Path, quick: bool, timings: dict[str, float]) -> bool:
    """Train the demo model, score Table 1, show one song; False when a required target is missed."""
    import shutil

    from rich.columns import Columns
    from rich.panel import Panel

    from eval import demo as demo_eval

    for sub in ("runs", "leaderboard"):  # a demo rerun trains and scores afresh
        shutil.rmtree(folder / sub, ignore_errors=True)
    steps = iter(range(3, 10))
    plan = demo_eval.QUICK if quick else demo_eval.DemoPlan()
    outcome = demo_eval.train_and_evaluate(
        folder, dataset, corpus, plan, log=lambda m: console.print(m, markup=False, highlight=False),
        step=lambda m: console.rule(f"{next(steps)}. {m}"))
    timings.update(outcome.timings)
    console.rule("Table 1 on the demo's test split")
    console.print(outcome.leaderboard.markdown, markup=False, highlight=False, soft_wrap=True)
    targets = Table(title="learning targets" + (" (not checked with --quick)" if quick else ""))
    for col in ("target", "measured", "wanted", "met"):
        targets.add_column(col)
    for t in outcome.targets:
        mark = "yes" if t.met else ("NO" if t.required else "no")
        targets.add_row(t.name, t.value, t.wanted, mark)
    console.print(targets)
    ex = outcome.example
    console.rule(f"one test song: {ex['song']} ({ex['id']})")
    console.print(Columns([Panel(ex["prediction"], title=f"generated ({ex['row']})"),
                           Panel(ex["reference"], title="reference (offline-built target)")], equal=True),
                  markup=False, highlight=False)
    console.print(f"leaderboard: {outcome.leaderboard.files['md']} (also .csv, .json, .png next to it)")
    console.print("A small model trained on offline-built text: a check that the system learns, not the paper's "
                  "numbers.", markup=False)
    return outcome.passed


def _print_demo_tour(folder: Path, result) -> None:
    rows = [r for split in result.rows["mv_description"].values() for r in split]
    table = Table(title="sample rows (mv_description)")
    for col in ("id", "song", "genres", "mv_type", "BPM", "key"):
        table.add_column(col)
    for r in rows[:10]:
        mf = r["music_features"]
        table.add_row(r["id"], r["song"], ", ".join(r["genres"]), r["mv_type"], f"{mf['tempo']:.0f}", mf["key"])
    console.print(table)
    where = Table(title="where things are", show_header=False)
    where.add_row("sample corpus", str(folder / "music4all"))
    where.add_row("dataset", f"{result.out}  (datasets.load_dataset('{result.out}'))")
    where.add_row("failures", str(result.out / "failures.jsonl"))
    where.add_row("build info", str(result.out / "build_info.json"))
    where.add_row("work dir", str(result.work))
    console.print(where)


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
    allow_partial: bool = typer.Option(False, "--allow-partial", help="With --dataset: score predictions that cover only part of the split."),
) -> None:
    """Score predictions: BLEU-1/4, ROUGE-L and BERTScore, x100 as in the paper's Table 1.

    With --dataset every line is scored against the dataset's reference for its id.
    """
    from mv4all.metrics import (
        BertScoreModelError,
        BertScorer,
        PredictionsError,
        load_prediction_sets,
        metric_settings,
        report_json,
        results_table,
        score_many,
    )

    if out is not None:  # checked before any scoring: the report must not replace an input, and must be writable
        if any(out.resolve() == Path(p).resolve() for p in predictions):
            _fail(f"--out {out} is one of the predictions files: choose another report path", 2)
        _check_writable(out, "--out")
    try:  # the model is checked first: an unusable default fails before any reading or scoring
        scorer = None if no_bertscore else BertScorer(bertscore_model, bertscore_layer, device=device,
                                                      batch_size=batch_size)
        sets = load_prediction_sets(predictions, dataset=dataset, split=split, allow_partial=allow_partial)
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
        from mv4all.safety import atomic_write_text

        atomic_write_text(out, text + "\n")
        console.print(f"wrote {out}")


@app.command()
def embed(
    dataset: Path = typer.Option(..., "--dataset", help="Built dataset folder (every id of both configs is embedded)."),
    audio_root: Path = typer.Option(..., "--audio-root", help="Music4All root: dataset audio paths are relative to it."),
    encoder: str = typer.Option(..., "--encoder", help="Registry name (imagebind, tiny, ast, clap, whisper) or a saved encoder folder."),
    encoder_path: Optional[str] = typer.Option(None, "--encoder-path", help="Weights for a registry name: imagebind_huge.pth, a folder or hub id."),
    out: Path = typer.Option(..., "--out", "-o", help="Cache folder to write (embeddings.safetensors + index.json)."),
    tokens_per_audio: str = typer.Option("1", "--tokens-per-audio", help="The model's setting: 1 (3 clips), k (k clips) or N (tile the clip)."),
    clip_sampler: str = typer.Option("imagebind", "--clip-sampler", help="imagebind or pytorchvideo-0.1.5."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    workers: int = typer.Option(0, "--workers", "-j", min=0, help="DataLoader workers for decoding + fbank."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device [cuda if available]."),
) -> None:
    """Run the frozen audio encoder once over the dataset; training then reads the cache."""
    import torch
    from rich.progress import Progress

    from mv4all.model import MV4AllConfig
    from mv4all.model.embedding_cache import build_embedding_cache, dataset_audio
    from mv4all.safety import claim_folder

    try:
        claim_folder(out, "embeddings", legacy=("index.json",))
        clips = MV4AllConfig(audio_encoder="imagebind", tokens_per_audio=tokens_per_audio).clips_per_audio
        total = len(dataset_audio(dataset))
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc), 2)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    try:
        with Progress(console=console) as progress:
            task = progress.add_task("embedding audio", total=total)
            folder = build_embedding_cache(dataset, audio_root, encoder, out, encoder_path=encoder_path, clips=clips,
                                           sampler=clip_sampler, batch_size=batch_size, num_workers=workers,
                                           device=device, progress=lambda n: progress.advance(task, n))
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc), 2)
    index = json.loads((folder / "index.json").read_text())
    console.print(f"embedded {index['num_ids']} audios x {index['clips_per_audio']} clips (dim {index['dim']}) "
                  f"with {index['encoder']['name']} (sha256 {index['encoder']['sha256'][:12]}) in "
                  f"{time.perf_counter() - started:.1f} s -> {folder}")


@app.command()
def describe(
    audio: Optional[Path] = typer.Argument(None, help="A song (any format PyAV decodes). Not with --dataset."),
    model: str = typer.Option(..., "--model", "-m", help="Run directory (train/sft.py) or Hub model id."),
    genre: list[str] = typer.Option([], "--genre", "-g", help="Genre tag (repeat, or comma-separated): input 2."),
    mv_type: Optional[str] = typer.Option(None, "--mv-type", help="One of the 10 MV types: input 3."),
    lyrics: Optional[Path] = typer.Option(None, "--lyrics", help="Lyrics text file: summarised by the build's lyrics-understanding step (input 4)."),
    lyrics_understanding: Optional[str] = typer.Option(None, "--lyrics-understanding", help="Ready-made lyrics understanding text (input 4)."),
    llm: str = typer.Option("offline", "--llm", help="Backend for --lyrics: offline (default, no network) or openai."),
    start: Optional[float] = typer.Option(None, "--start", min=0.0, help="Start (s) of the 30 s window of a longer song [centred]."),
    inputs: Optional[str] = typer.Option(None, "--inputs", help="Input combination, e.g. 1+2+3 or none [the run's training inputs]."),
    as_json: bool = typer.Option(False, "--json", help="Structured output (MVDescription.parse)."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="Batch mode: a built dataset folder."),
    split: str = typer.Option("test", "--split", help="Batch mode: the split to describe."),
    audio_root: Optional[Path] = typer.Option(None, "--audio-root", help="Batch mode: the Music4All folder the dataset's audio paths are relative to."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Batch mode: predictions JSONL (resumable)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Batch mode: first N rows only."),
    decoding: Optional[str] = typer.Option(None, "--decoding", help="greedy, beam or sample [the run's generation_config.json, else greedy]."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1),
    num_beams: Optional[int] = typer.Option(None, "--num-beams", min=1),
    temperature: Optional[float] = typer.Option(None, "--temperature", min=0.0),
    top_p: Optional[float] = typer.Option(None, "--top-p", min=0.0, max=1.0),
    no_repeat_ngram_size: Optional[int] = typer.Option(None, "--no-repeat-ngram-size", min=0),
    repetition_penalty: Optional[float] = typer.Option(None, "--repetition-penalty", min=0.0),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
    seed: Optional[int] = typer.Option(None, "--seed"),
    save_generation_config: bool = typer.Option(False, "--save-generation-config", help="Store these decoding settings in the run's generation_config.json (the only way describe writes into a run)."),
    audio_encoder: Optional[str] = typer.Option(None, "--audio-encoder", help="The run's frozen audio encoder weights (e.g. imagebind_huge.pth) [MV4ALL_AUDIO_ENCODER, the user config, then the run's record]."),
    base_model: Optional[str] = typer.Option(None, "--base-model", help="The run's base LLM, path or Hub id [MV4ALL_BASE_MODEL, the user config, then the run's record]."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32, bf16 or fp16 [the precision the run trained in]."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device [cuda if available]."),
) -> None:
    """Describe a song's music video (Overview + Frame-by-frame Breakdown), or a whole dataset split."""
    import torch

    from mv4all import describe as D
    from mv4all.inputs import parse_combination
    from mv4all.schema import MV_TYPES

    if (audio is None) == (dataset is None):
        _fail("give either an audio file or --dataset DIR (batch mode)", 2)
    if dataset is not None and out is None:
        _fail("batch mode needs --out predictions.jsonl", 2)
    if lyrics is not None and lyrics_understanding is not None:
        _fail("--lyrics and --lyrics-understanding are alternatives: give one", 2)
    try:
        combo = None if inputs is None else parse_combination(inputs).name
    except ValueError as exc:
        _fail(str(exc), 2)
    if mv_type is not None:
        match = {t.lower(): t for t in MV_TYPES}.get(mv_type.strip().lower())
        if match is None:
            _fail(f"unknown MV type {mv_type!r}; choose one of: {', '.join(MV_TYPES)}", 2)
        mv_type = match
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    overrides = dict(strategy=decoding, max_new_tokens=max_new_tokens, num_beams=num_beams,
                     temperature=temperature, top_p=top_p, no_repeat_ngram_size=no_repeat_ngram_size,
                     repetition_penalty=repetition_penalty, batch_size=batch_size, seed=seed)
    if precision is not None and precision.lower() not in ("fp32", "bf16", "fp16"):
        _fail(f"--precision must be fp32, bf16 or fp16, got {precision!r}", 2)
    try:
        D.Decoding().replace(**overrides)  # bad settings fail before anything loads
    except ValueError as exc:
        _fail(str(exc), 2)

    # Lyrics understanding runs before the model loads, so a backend problem fails fast.
    genres = [g.strip() for item in genre for g in item.split(",") if g.strip()]
    notes: list[str] = []
    if lyrics is not None:
        from builders.llm import get_backend
        from builders.stages import LYRICS_UNDERSTANDING, StageInput
        from mv4all.schema import Track

        if not lyrics.is_file():
            _fail(f"lyrics file not found: {lyrics}", 2)
        name = audio.stem if audio is not None else lyrics.stem
        try:
            backend = get_backend(llm)
            track = Track(id=name, artist="", song=name)
            result = backend.run(LYRICS_UNDERSTANDING, [StageInput(clip_id=name, track=track,
                                                                   lyrics=lyrics.read_text(encoding="utf-8"))])[0]
        except Exception as exc:  # noqa: BLE001 - any backend failure is a clear CLI error
            _fail(f"lyrics understanding with the {llm} backend failed: {exc}", 2)
        if not result.ok:
            _fail(f"lyrics understanding with the {llm} backend failed: {result.error}", 2)
        lyrics_understanding = result.output.text
        notes.append(f"lyrics understanding by the {llm} backend ({result.model or llm})")

    if audio is not None and not audio.is_file():
        _fail(f"audio file not found: {audio}", 2)
    started = time.perf_counter()
    try:
        describer = D.Describer.from_run(model, inputs=combo, overrides=overrides, device=device,
                                         language_model=base_model, audio_encoder_path=audio_encoder,
                                         dtype=precision)
    except (FileNotFoundError, ValueError, OSError) as exc:
        _fail(f"cannot load model {model}: {exc}", 2)
    if save_generation_config:
        if not Path(model).is_dir():
            _fail("--save-generation-config needs a local run directory", 2)
        wrote = D.save_generation_config(model, describer.decoding)
        console.print(f"decoding settings saved to {wrote}")
    console.print(f"loaded {model} (trained on {describer.train_inputs}, describing with inputs "
                  f"{describer.inputs}) in {time.perf_counter() - started:.1f} s", markup=False, soft_wrap=True)
    used = parse_combination(describer.inputs)
    for number, option, given in ((2, "--genre", bool(genres)), (3, "--mv-type", mv_type is not None),
                                  (4, "--lyrics/--lyrics-understanding", lyrics_understanding is not None)):
        if given and number not in used:
            console.print(f"[yellow]warning:[/] {option} is ignored: inputs {describer.inputs} do not include "
                          f"input {number} (pass --inputs to choose)", soft_wrap=True)

    if dataset is not None:  # batch mode; under `accelerate launch` each process takes a shard, rank 0 merges
        import torch
        from accelerate import PartialState

        # On a CPU-only machine PartialState must be told, else torchrun's ranks each see one process.
        state = PartialState(cpu=(device == "cpu" or not torch.cuda.is_available()))
        try:
            written = D.predict_split(describer, dataset, out, split=split, audio_root=audio_root, limit=limit,
                                      process_index=state.process_index, num_processes=state.num_processes)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            _fail(str(exc), 2)
        state.wait_for_everyone()
        if state.num_processes > 1 and state.is_main_process:
            written = D.merge_parts(out, state.num_processes, [r["id"] for r in D.load_split(dataset, split)])
        if state.is_main_process:
            console.print(f"{len(D.done_ids(out))} predictions in {written}")
        return
    try:
        text, window = describer.describe(audio, genres=genres, mv_type=mv_type,
                                          lyrics_understanding=lyrics_understanding, start=start)
    except D.AudioDecodeError as exc:
        _fail(f"cannot read audio: {exc}", 2)
    if window is not None and window.note:
        notes.append(window.note)
    if start is not None and window is not None and window.duration <= window.seconds:
        notes.append(f"--start ignored: the audio is {window.duration:.1f} s, no longer than the {window.seconds:g} s window")
    for note in notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True)
    if as_json:
        structured = D.parse_description(text)
        if "parse_error" in structured:
            console.print(f"[yellow]warning:[/] the output is not a well-formed MV description "
                          f"({structured['parse_error']}); returning the raw text")
        structured["meta"] = {"model": model, "inputs": describer.inputs, "train_inputs": describer.train_inputs,
                              "decoding": describer.decoding.record(), "notes": notes,
                              "audio_window": None if window is None else
                              {"start": window.start, "seconds": window.seconds, "duration": window.duration,
                               "padded": window.padded}}
        print(json.dumps(structured, indent=2, ensure_ascii=False))
    else:
        print(text)


def main() -> None:
    """The ``mv4all`` command: a mistake or a failure is one line on stderr, never a traceback.

    Commands turn the errors they expect into messages naming the file or option; this is the last
    resort for the rest. ``MV4ALL_DEBUG=1`` shows the traceback (for bug reports).
    """
    import os

    try:
        app()  # click itself answers usage errors (exit 2) and Ctrl-C
    except Exception as exc:  # noqa: BLE001 - the last resort described above
        if os.environ.get("MV4ALL_DEBUG"):
            raise
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: {type(exc).__name__}: {text} (MV4ALL_DEBUG=1 shows the traceback)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
