"""The paper's evaluation metrics (Table 1), offline and x100.

BLEU-1/BLEU-4 as the `evaluate` "bleu" metric computes them (corpus level, 13a, no
smoothing), ROUGE-L as ``rouge_score``'s ``rougeL`` without stemming (means of per-pair
P/R/F), BERTScore as ``bert_score.score`` (idf off, no rescaling, roberta-large layer 17
unless told otherwise). ``score_many`` scores a whole leaderboard in one call, embedding
each distinct text once. The `evaluate` module in ``eval/mv_description`` and
``mv4all evaluate`` are thin wrappers over this package.
"""

from .bertscore import (
    DEFAULT_LAYER,
    DEFAULT_MODEL,
    NOT_COMPARABLE,
    BertScoreModel,
    BertScoreModelError,
    BertScorer,
    greedy_match,
    resolve_model,
)
from .bleu import BleuScore, bleu_scores, corpus_bleu, tokenize_13a
from .faithfulness import (
    CLAIM_TYPES,
    Claim,
    ClaimCheck,
    Facts,
    FaithfulnessResult,
    TypeScore,
    check_claims,
    check_text,
    extract_claims,
    music_faithfulness,
)
from .predictions import (
    PredictionsError,
    PredictionSet,
    dataset_references,
    fill_references,
    load_prediction_sets,
    read_predictions,
)
from .quality import FACT_COLUMNS, QualityResult, dataset_facts, quality_scores, quality_table
from .report import report_json, results_table
from .rouge import lcs_length, rouge_l, rouge_l_pair, rouge_l_pairs
from .rouge import tokenize as rouge_tokenize
from .scores import SCORE_COLUMNS, MetricResult, compute, metric_settings, score_many
from .structure import StructureResult, structure_metrics

__all__ = [
    "FACT_COLUMNS",
    "QualityResult",
    "dataset_facts",
    "quality_scores",
    "quality_table",
    "CLAIM_TYPES",
    "DEFAULT_LAYER",
    "DEFAULT_MODEL",
    "NOT_COMPARABLE",
    "SCORE_COLUMNS",
    "BertScoreModel",
    "BertScoreModelError",
    "BertScorer",
    "BleuScore",
    "Claim",
    "ClaimCheck",
    "Facts",
    "FaithfulnessResult",
    "MetricResult",
    "PredictionSet",
    "PredictionsError",
    "StructureResult",
    "TypeScore",
    "bleu_scores",
    "check_claims",
    "check_text",
    "compute",
    "corpus_bleu",
    "dataset_references",
    "extract_claims",
    "music_faithfulness",
    "fill_references",
    "greedy_match",
    "lcs_length",
    "load_prediction_sets",
    "metric_settings",
    "read_predictions",
    "report_json",
    "resolve_model",
    "results_table",
    "rouge_l",
    "rouge_l_pair",
    "rouge_l_pairs",
    "rouge_tokenize",
    "score_many",
    "structure_metrics",
    "tokenize_13a",
]
