"""``mv4all demo``: sample corpus -> offline build -> a small model trained in two stages ->
Table 1 (then its structure and music faithfulness), all on this machine, with a tour of where
everything was written."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from mv4all.cli.common import app, console, fail
from mv4all.cli.dataset import print_build_summary, run_build


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
        fail(str(exc), 2)
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
    result = run_build(cfg, quiet=False)
    timings["build"] = time.perf_counter() - t0
    print_build_summary(result)
    _print_demo_tour(folder, result)
    ok = True
    if train:
        ok = _demo_learning(folder, result.out, corpus, quick, timings)
    console.rule("timing")
    for name, seconds in timings.items():
        console.print(f"  {name:<22} {seconds:7.1f} s")
    console.print(f"  {'total':<22} {time.perf_counter() - started:7.1f} s")
    if not ok:
        fail("the demo model did not reach its learning targets (see above)", 1)


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
    from mv4all.metrics import quality_table

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
    console.print(quality_table(outcome.leaderboard.quality))  # the second table: structure, faithfulness
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
