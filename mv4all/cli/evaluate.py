"""``mv4all evaluate``: score prediction files with BLEU-1/4, ROUGE-L and BERTScore (x100, as in the
paper's Table 1), several files in one call sharing BERTScore embeddings; print or write the report."""

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
            fail(f"--out {out} is one of the predictions files: choose another report path", 2)
        check_writable(out, "--out")
    try:  # the model is checked first: an unusable default fails before any reading or scoring
        scorer = None if no_bertscore else BertScorer(bertscore_model, bertscore_layer, device=device,
                                                      batch_size=batch_size)
        sets = load_prediction_sets(predictions, dataset=dataset, split=split, allow_partial=allow_partial)
    except (BertScoreModelError, PredictionsError) as exc:
        fail(str(exc), 2)
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
    sources = {n: {"predictions": str(s.path), "runs": s.runs} for n, s in sets.items()}
    text = json.dumps(report_json(results, metric_settings(scorer.spec if scorer else None), sources), indent=2)
    if out is None:
        print(text)
    else:
        from mv4all.safety import atomic_write_text

        atomic_write_text(out, text + "\n")
        console.print(f"wrote {out}")
