"""``mv4all evaluate``: score prediction files with BLEU-1/4, ROUGE-L and BERTScore (x100, as in the
paper's Table 1), several files in one call sharing BERTScore embeddings; then the metrics beyond
n-gram overlap (structure always, music faithfulness with ``--dataset``) and, when asked with
``--judge openai``, an LLM judge; print or write the report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from mv4all.cli.common import app, check_writable, console, fail


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
    allow_partial: bool = typer.Option(
        False, "--allow-partial", help="With --dataset: score predictions that cover only part of the split."),
    judge: Optional[str] = typer.Option(
        None, "--judge", help="Also score with an LLM judge: 'openai' (any OpenAI-compatible server; needs "
                              "--dataset and OPENAI_API_KEY; paid, cached). Off by default."),
    judge_model: str = typer.Option("gpt-4o-mini", "--judge-model", help="The judge's model."),
    judge_base_url: Optional[str] = typer.Option(
        None, "--judge-base-url", help="OpenAI-compatible server [$OPENAI_BASE_URL, else api.openai.com]."),
    judge_dry_run: bool = typer.Option(
        False, "--judge-dry-run", help="Estimate the judge's requests, tokens and cost; send nothing."),
) -> None:
    """Score predictions: BLEU-1/4, ROUGE-L and BERTScore, x100 as in the paper's Table 1.

    With --dataset every line is scored against the dataset's reference for its id, and its claims about
    the music (tempo, key, meter, energy, mood, MV type, genre) against the clip's measured features.
    """
    from mv4all.metrics import (
        FACT_COLUMNS,
        BertScoreModelError,
        BertScorer,
        PredictionsError,
        dataset_facts,
        load_prediction_sets,
        metric_settings,
        quality_scores,
        quality_table,
        report_json,
        results_table,
        score_many,
    )

    if out is not None:  # checked before any scoring: the report must not replace an input, and must be writable
        if any(out.resolve() == Path(p).resolve() for p in predictions):
            fail(f"--out {out} is one of the predictions files: choose another report path", 2)
        check_writable(out, "--out")
    try:  # the model is checked first: an unusable default fails before any reading or scoring
        scorer = None if no_bertscore else BertScorer(bertscore_model, bertscore_layer, device=device,
                                                      batch_size=batch_size)
        sets = load_prediction_sets(predictions, dataset=dataset, split=split, allow_partial=allow_partial)
    except (BertScoreModelError, PredictionsError) as exc:
        fail(str(exc), 2)
    if judge is not None and judge != "openai":
        fail(f"--judge {judge}: the judge backend must be 'openai' (any OpenAI-compatible server)", 2)
    if judge is not None and dataset is None:
        fail("--judge needs --dataset: the judge reads each clip's facts from the dataset", 2)
    started = time.perf_counter()
    try:
        with console.status("scoring ...") as status:
            def progress(done: int, total: int) -> None:
                status.update(f"BERTScore: embedded {done}/{total} distinct texts")

            results = score_many({n: s.predictions for n, s in sets.items()},
                                 {n: s.references for n, s in sets.items()},
                                 bertscore=scorer is not None, scorer=scorer, progress=progress)
    except BertScoreModelError as exc:
        fail(str(exc), 2)
    console.print(results_table(results))
    console.print(f"scored {sum(r.n for r in results.values())} predictions in {time.perf_counter() - started:.1f} s")
    columns = (*FACT_COLUMNS, "lyrics_understanding")  # the judge also reads what the lyrics are about
    facts = None if dataset is None else dataset_facts(dataset, split, columns)
    quality = {n: quality_scores(s.predictions, None if facts is None else [facts[r.id] for r in s.records])
               for n, s in sets.items()}
    console.print(quality_table(quality))
    if facts is None:
        console.print("music faithfulness needs the clips' measured features: pass --dataset DIR")
    sources = {n: {"predictions": str(s.path), "runs": s.runs} for n, s in sets.items()}
    report = report_json(results, metric_settings(scorer.spec if scorer else None), sources)
    for row in report["results"]:
        row["quality"] = quality[row["name"]].to_dict()
    if judge is not None:
        for row in report["results"]:
            row["judge"] = _judge(sets[row["name"]], facts, model=judge_model, base_url=judge_base_url,
                                  dry_run=judge_dry_run)
    text = json.dumps(report, indent=2)
    if out is None:
        print(text)
    else:
        from mv4all.safety import atomic_write_text

        atomic_write_text(out, text + "\n")
        console.print(f"wrote {out}")


def _judge(prediction_set, facts: dict, *, model: str, base_url: str | None, dry_run: bool) -> dict:
    """One predictions file through the LLM judge (``eval.judge``); its table printed, its report returned."""
    from eval.judge import judge_predictions, judge_table

    records = prediction_set.records
    rows = [facts[r.id] for r in records]
    with console.status(f"judging {prediction_set.name} with {model} ..."):
        try:
            report = judge_predictions([r.prediction for r in records], rows, [r.reference or "" for r in records],
                                       model=model, base_url=base_url, dry_run=dry_run)
        except (RuntimeError, ValueError) as exc:
            fail(f"--judge: {exc}", 2)
    table = judge_table(report)
    table.title = f"{table.title or 'LLM judge'}: {prediction_set.name}"
    console.print(table)
    return report.to_dict()
