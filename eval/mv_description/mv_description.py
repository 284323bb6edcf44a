"""The paper's MV-description metrics as an `evaluate` module that loads offline.

`evaluate.load("bleu"/"rouge"/"bertscore")` fetches code from the Hub; this folder is
loaded from disk (`evaluate.load("eval/mv_description")`) and delegates to
`mv4all.metrics`, so the library, `mv4all evaluate` and this module give the same numbers.
With `quality=True` it also returns the numbers beyond n-gram overlap (`mv4all.metrics.quality`):
off by default, so callers of the paper's metrics get exactly the keys they always got.
"""

import datasets
import evaluate

from mv4all.metrics import BertScorer, metric_settings, quality_scores, score_many

_DESCRIPTION = """\
BLEU-1, BLEU-4, ROUGE-L precision/recall/F1 and BERTScore precision/recall/F1, x100, as in
Table 1 of "Cross-Modal Learning for Music-to-Music-Video Description Generation"
(Mao et al., 2025). BLEU is corpus-level with 13a tokenisation and no smoothing (the
`evaluate` "bleu" algorithm); ROUGE-L is rouge_score's rougeL without stemming, averaged
over pairs; BERTScore uses bert_score's model loading, idf off, no rescaling,
roberta-large layer 17 by default (any other model is reported as not comparable to the paper).
"""

_CITATION = """\
@article{mao2025mv,
  title={Cross-Modal Learning for Music-to-Music-Video Description Generation},
  author={Mao and others},
  year={2025}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: generated MV descriptions (strings).
    references: one reference description per prediction (strings).
    bertscore: False to skip BERTScore (it needs a model; roberta-large is slow on CPU).
    bertscore_model: hub id or local folder of the BERTScore model [roberta-large].
    bertscore_layer: layer whose embeddings are matched [17 for roberta-large; required otherwise].
    device: torch device for BERTScore [cuda if available].
    batch_size: BERTScore batch size [64].
    quality: True to also return `quality` (structure of every prediction; see below) [False].
    rows: the dataset rows of the clips, one per prediction in order, each a dict with the measured
        facts `music_features`, `mv_type` and `genres` (a built dataset's mv_description rows, e.g.
        `mv4all.metrics.dataset_facts(folder, "test")[id]`); adds music faithfulness to `quality`
        and implies quality=True [None].
Returns:
    bleu_1, bleu_4, rouge_l_precision, rouge_l_recall, rouge_l_f1, bertscore_precision,
    bertscore_recall, bertscore_f1 (x100), n, bertscore_model, bertscore_layer,
    bertscore_comparable_to_paper, bertscore_note, bleu_details and settings.
    With quality=True or rows, also `quality` (`QualityResult.to_dict()`, fractions 0..1, not x100):
    {"n", "structure": {parse_rate, parse_rate_10, mean_frames, mean_frame_error, exact_frames_rate,
    truncation_rate, repetition, expected_frames, n}, "faithfulness": {score, macro_precision,
    coverage, per_type: {claim type: {coverage, precision, checked, right}}, n} or None without rows}.
Examples:
    >>> metric = evaluate.load("eval/mv_description")
    >>> metric.compute(predictions=["a singer on a stage"], references=["a singer on a stage"],
    ...                bertscore=False)["bleu_1"]
    100.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MvDescription(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/sony/openmu", "https://github.com/Tiiiger/bert_score"],
        )

    def _compute(
        self,
        predictions,
        references,
        bertscore=True,
        bertscore_model=None,
        bertscore_layer=None,
        device=None,
        batch_size=64,
        quality=False,
        rows=None,
    ):
        scorer = (BertScorer(bertscore_model, bertscore_layer, device=device, batch_size=batch_size)
                  if bertscore else None)
        result = score_many({"predictions": predictions}, references, bertscore=bertscore, scorer=scorer)["predictions"]
        out = {**result.model_dump(), "settings": metric_settings(scorer.spec if scorer else None)}
        if quality or rows is not None:  # passing the rows is asking for their faithfulness
            out["quality"] = quality_scores(predictions, rows).to_dict()
        return out
