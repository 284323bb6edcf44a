"""Corpus BLEU exactly as the `evaluate` "bleu" metric computes it.

The paper's group scores BLEU-1 and BLEU-4 with ``evaluate.load("bleu")`` and
``max_order=n``: mteval-13a tokenisation followed by tensorflow/nmt's
``compute_bleu`` (corpus-level counts, shortest-reference length, no smoothing).
That metric's code lives on the Hub and cannot be fetched offline, so it is
re-implemented here; sacrebleu's ``precisions[0]`` is not BLEU-1 and nltk
tokenises differently, so neither is used.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

# mteval-v13a's language-dependent rules, as sacrebleu/evaluate write them.
_13A_RULES = (
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # punctuation and symbols
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period/comma unless preceded by a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # period/comma unless followed by a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # dash after a digit
)


@lru_cache(maxsize=2**16)
def tokenize_13a(line: str) -> tuple[str, ...]:
    """mteval-13a tokens of one segment (cached: references repeat across prediction sets)."""
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    for pattern, repl in _13A_RULES:
        line = pattern.sub(repl, line)
    return tuple(line.split())


@dataclass(frozen=True)
class BleuScore:
    """One BLEU-n result; ``bleu`` and ``precisions`` are x100 like Table 1."""

    max_order: int
    bleu: float
    precisions: tuple[float, ...]
    brevity_penalty: float
    length_ratio: float
    translation_length: int
    reference_length: int

    def as_dict(self) -> dict:
        return {
            "max_order": self.max_order,
            "bleu": self.bleu,
            "precisions": list(self.precisions),
            "brevity_penalty": self.brevity_penalty,
            "length_ratio": self.length_ratio,
            "translation_length": self.translation_length,
            "reference_length": self.reference_length,
        }


@dataclass
class _Counts:
    matches: list[int]
    possible: list[int]
    translation_length: int = 0
    reference_length: int = 0


def _ngrams(tokens: Sequence[str], max_order: int) -> Counter:
    counts: Counter = Counter()
    for order in range(1, max_order + 1):
        for i in range(len(tokens) - order + 1):
            counts[tuple(tokens[i : i + order])] += 1
    return counts


def _corpus_counts(predictions: Sequence[str], references: Sequence[str | Sequence[str]], max_order: int) -> _Counts:
    counts = _Counts(matches=[0] * max_order, possible=[0] * max_order)
    for prediction, refs in zip(predictions, references, strict=True):
        ref_list = [refs] if isinstance(refs, str) else list(refs)
        ref_tokens = [tokenize_13a(r) for r in ref_list]
        hyp = tokenize_13a(prediction)
        counts.reference_length += min(len(r) for r in ref_tokens)
        counts.translation_length += len(hyp)
        merged: Counter = Counter()
        for r in ref_tokens:
            merged |= _ngrams(r, max_order)
        overlap = _ngrams(hyp, max_order) & merged
        for ngram, n in overlap.items():
            counts.matches[len(ngram) - 1] += n
        for order in range(1, max_order + 1):
            possible = len(hyp) - order + 1
            if possible > 0:
                counts.possible[order - 1] += possible
    return counts


def _score(counts: _Counts, max_order: int) -> BleuScore:
    precisions = [
        counts.matches[i] / counts.possible[i] if counts.possible[i] > 0 else 0.0 for i in range(max_order)
    ]
    if min(precisions) > 0:
        geo_mean = math.exp(sum(math.log(p) / max_order for p in precisions))
    else:
        geo_mean = 0.0
    # nmt's compute_bleu divides by zero on empty corpora; a defined answer is more useful.
    if counts.reference_length > 0:
        ratio = counts.translation_length / counts.reference_length
    else:
        ratio = math.inf if counts.translation_length else 0.0
    if ratio > 1.0:
        bp = 1.0
    elif ratio > 0.0:
        bp = math.exp(1.0 - 1.0 / ratio)
    else:
        bp = 0.0
    return BleuScore(
        max_order=max_order,
        bleu=100.0 * geo_mean * bp,
        precisions=tuple(100.0 * p for p in precisions),
        brevity_penalty=bp,
        length_ratio=ratio,
        translation_length=counts.translation_length,
        reference_length=counts.reference_length,
    )


def bleu_scores(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]], orders: Iterable[int] = (1, 4)
) -> dict[int, BleuScore]:
    """BLEU-n for several n from one pass over the n-gram counts (BLEU-n uses orders 1..n only)."""
    orders = sorted(set(orders))
    if not orders or orders[0] < 1:
        raise ValueError(f"BLEU orders must be >= 1, got {orders}")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    counts = _corpus_counts(predictions, references, orders[-1])
    out = {}
    for n in orders:
        sub = _Counts(counts.matches[:n], counts.possible[:n], counts.translation_length, counts.reference_length)
        out[n] = _score(sub, n)
    return out


def corpus_bleu(predictions: Sequence[str], references: Sequence[str | Sequence[str]], max_order: int = 4) -> BleuScore:
    """``evaluate.load("bleu").compute(..., max_order=max_order)``, with bleu/precisions x100."""
    return bleu_scores(predictions, references, (max_order,))[max_order]
