"""Beyond n-gram overlap: does a description fit its music, and can a video model use it?

BLEU, ROUGE-L and BERTScore reward wording close to one reference; they cannot tell whether a
description fits the music it was written for (the paper's open problem). This module puts the
two answers that need no model next to them, per predictions file: structure (does it parse as an
overview + a numbered 15-frame breakdown, is it cut off, does it loop) and music faithfulness (are
the tempo, key, meter, energy, mood, MV type and genre it claims those measured on the clip; needs
the dataset rows). The paper's table is left exactly as it is; these form a second table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from rich.markup import escape
from rich.table import Table

from .faithfulness import FaithfulnessResult, music_faithfulness
from .structure import StructureResult, structure_metrics

# What faithfulness reads from a dataset row (the measured facts), besides the id.
FACT_COLUMNS = ("id", "music_features", "mv_type", "genres")
# Claim types shown in the table (all of them are in the JSON).
TABLE_TYPES = ("tempo", "key", "mv_type", "genre")


@dataclass
class QualityResult:
    """Structure of every prediction; faithfulness when the clips' rows were given."""

    n: int
    structure: StructureResult
    faithfulness: FaithfulnessResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "structure": self.structure.to_dict(),
                "faithfulness": None if self.faithfulness is None else self.faithfulness.to_dict()}


def quality_scores(predictions: Sequence[str], rows: Sequence[Any] | None = None) -> QualityResult:
    """Structure of ``predictions``; with ``rows`` (one per prediction, in order) also their faithfulness."""
    return QualityResult(n=len(predictions), structure=structure_metrics(predictions),
                         faithfulness=None if rows is None else music_faithfulness(predictions, rows))


def dataset_facts(dataset: str | os.PathLike, split: str = "test",
                  columns: Sequence[str] = FACT_COLUMNS) -> dict[str, dict[str, Any]]:
    """``id -> row`` with the measured facts of one split (``mv4all.data.load_split`` reads the folder)."""
    from ..data import load_split

    ds = load_split(dataset, "mv_description", split)
    ds = ds.select_columns([c for c in dict.fromkeys(["id", *columns]) if c in ds.column_names])
    return {row["id"]: row for row in ds}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def quality_table(results: Mapping[str, QualityResult], title: str = "Beyond n-gram overlap (%)") -> Table:
    """One row per predictions file: structure, then faithfulness overall and for the main claim types."""
    table = Table(title=title + "\nparse = overview + numbered frames; P = precision of the claims made")
    table.add_column("predictions", overflow="fold")
    for label in ("n", "parse", ">=10 fr", "frames", "cut", "rep 4g", "faithful", "claims"):
        table.add_column(label, justify="right")
    for claim in TABLE_TYPES:
        table.add_column(f"{claim} P", justify="right")
    for name, result in results.items():
        s, f = result.structure, result.faithfulness
        cells = [str(result.n), _pct(s.parse_rate), _pct(s.parse_rate_10), f"{s.mean_frames:.1f}",
                 _pct(s.truncation_rate), _pct(s.repetition)]
        if f is None:
            cells += ["-"] * (2 + len(TABLE_TYPES))
        else:
            cells += [_pct(f.score), _pct(f.coverage)]
            cells += [_pct(f.per_type[t].precision) if t in f.per_type else "-" for t in TABLE_TYPES]
        table.add_row(escape(name), *cells)
    table.caption = ("frames: mean count (15 expected); cut: ends mid-sentence; rep 4g: repeated 4-grams; "
                     "faithful: right / checked musical claims against the clip's measured features; "
                     "claims: share of predictions making at least one")
    return table
