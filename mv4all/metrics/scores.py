"""All Table 1 metrics for one or many prediction sets, x100, with the settings that made them.

Every result carries the BERTScore model and layer because BERTScore numbers are only
comparable under the same model; a result from anything but roberta-large layer 17 says
so instead of silently sitting next to the paper's numbers.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from .bertscore import NOT_COMPARABLE, BertScoreModel, BertScorer, Progress, _check_pairs
from .bleu import bleu_scores
from .rouge import rouge_l

BLEU_ORDERS = (1, 4)

# (result field, short table label) in the paper's column order.
SCORE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("bleu_1", "BLEU-1"),
    ("bleu_4", "BLEU-4"),
    ("rouge_l_precision", "ROUGE-L P"),
    ("rouge_l_recall", "ROUGE-L R"),
    ("rouge_l_f1", "ROUGE-L F1"),
    ("bertscore_precision", "BERTScore P"),
    ("bertscore_recall", "BERTScore R"),
    ("bertscore_f1", "BERTScore F1"),
)


class MetricResult(BaseModel):
    """Scores of one prediction set, each x100 as in the paper's Table 1."""

    model_config = ConfigDict(extra="forbid")

    n: int
    bleu_1: float
    bleu_4: float
    rouge_l_precision: float
    rouge_l_recall: float
    rouge_l_f1: float
    bertscore_precision: float | None = None
    bertscore_recall: float | None = None
    bertscore_f1: float | None = None
    bertscore_model: str | None = None
    bertscore_layer: int | None = None
    bertscore_comparable_to_paper: bool | None = None
    bertscore_note: str | None = None  # "not comparable to the paper" for any other model/layer
    bleu_details: dict[str, dict] = {}  # per order: precisions, brevity penalty, lengths

    def scores(self) -> dict[str, float | None]:
        return {key: getattr(self, key) for key, _ in SCORE_COLUMNS}


def metric_settings(bertscore: BertScoreModel | None) -> dict:
    """How every number was computed, for the JSON report and the evaluate module."""
    return {
        "scale": 100,
        "bleu": {
            "orders": list(BLEU_ORDERS),
            "algorithm": "evaluate 'bleu' (tensorflow/nmt compute_bleu), reimplemented",
            "level": "corpus",
            "tokenize": "13a",
            "smooth": False,
            "lowercase": False,
        },
        "rouge": {
            "type": "rougeL",
            "implementation": "rouge_score tokeniser and scores, bit-parallel LCS",
            "use_stemmer": False,
            "aggregate": "mean of per-pair precision, recall and F1",
        },
        "bertscore": None
        if bertscore is None
        else {
            "model": bertscore.name,
            "layer": bertscore.layer,
            "idf": False,
            "rescale_with_baseline": False,
            "aggregate": "mean of per-pair precision, recall and F1",
            "comparable_to_paper": bertscore.comparable_to_paper,
            "note": bertscore.note,
        },
    }


def score_many(
    prediction_sets: Mapping[str, Sequence[str]],
    references: Sequence[str] | Mapping[str, Sequence[str]],
    *,
    bertscore: bool = True,
    bertscore_model: str | os.PathLike | None = None,
    bertscore_layer: int | None = None,
    scorer: BertScorer | None = None,
    device: str | None = None,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> dict[str, MetricResult]:
    """Score several prediction sets in one call (a leaderboard), sharing BERTScore embeddings.

    ``references`` is one list aligned with every set, or a mapping from set name to its
    own aligned list (sets over different ids or orders still share embeddings by text).
    The BERTScore model is resolved before any scoring, so an unusable model fails at once.
    """
    if not prediction_sets:
        raise ValueError("no prediction sets to score")
    if isinstance(references, Mapping):
        missing = [name for name in prediction_sets if name not in references]
        if missing:
            raise ValueError(f"no references for prediction set(s) {missing}")
        refs_of = {name: list(references[name]) for name in prediction_sets}
    else:
        shared = list(references)
        refs_of = {name: shared for name in prediction_sets}
    preds_of = {name: list(preds) for name, preds in prediction_sets.items()}
    for name in preds_of:
        _check_pairs(name, preds_of[name], refs_of[name])
    if bertscore and scorer is None:
        scorer = BertScorer(bertscore_model, bertscore_layer, device=device, batch_size=batch_size)
    if not bertscore:
        scorer = None

    results: dict[str, MetricResult] = {}
    for name, preds in preds_of.items():
        bleu = bleu_scores(preds, refs_of[name], BLEU_ORDERS)
        rouge = rouge_l(preds, refs_of[name])
        results[name] = MetricResult(
            n=len(preds),
            bleu_1=bleu[1].bleu,
            bleu_4=bleu[4].bleu,
            rouge_l_precision=rouge["precision"],
            rouge_l_recall=rouge["recall"],
            rouge_l_f1=rouge["f1"],
            bleu_details={str(n): b.as_dict() for n, b in bleu.items()},
        )
    if scorer is not None:
        spec = scorer.spec
        per_pair = scorer.score_many({name: (preds_of[name], refs_of[name]) for name in preds_of}, progress)
        for name, (p, r, f) in per_pair.items():
            results[name] = results[name].model_copy(
                update={
                    "bertscore_precision": 100.0 * float(p.double().mean()),
                    "bertscore_recall": 100.0 * float(r.double().mean()),
                    "bertscore_f1": 100.0 * float(f.double().mean()),
                    "bertscore_model": spec.name,
                    "bertscore_layer": spec.layer,
                    "bertscore_comparable_to_paper": spec.comparable_to_paper,
                    "bertscore_note": None if spec.comparable_to_paper else NOT_COMPARABLE,
                }
            )
    return results


def compute(predictions: Sequence[str], references: Sequence[str], **options) -> MetricResult:
    """All metrics for one prediction set; options as in ``score_many``."""
    return score_many({"predictions": predictions}, references, **options)["predictions"]
