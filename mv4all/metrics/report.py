"""The evaluation report: a rich table for people and a JSON document for machines.

Both name the BERTScore model and layer, because those decide whether a row can stand
next to the paper's Table 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from rich.markup import escape
from rich.table import Table

from .bertscore import NOT_COMPARABLE
from .scores import SCORE_COLUMNS, MetricResult


def _bertscore_label(results: Mapping[str, MetricResult]) -> str | None:
    first = next((r for r in results.values() if r.bertscore_model is not None), None)
    if first is None:
        return None
    name = first.bertscore_model
    if "/" in name and Path(name).is_dir():  # a local folder: its last two parts say enough
        name = "/".join(Path(name).resolve().parts[-2:])
    return escape(f"{name} L{first.bertscore_layer}")


# Short column labels keep the table readable in 80 columns; the title spells them out.
_LABELS = {
    "bleu_1": "BLEU-1",
    "bleu_4": "BLEU-4",
    "rouge_l_precision": "RL P",
    "rouge_l_recall": "RL R",
    "rouge_l_f1": "RL F1",
    "bertscore_precision": "BS P",
    "bertscore_recall": "BS R",
    "bertscore_f1": "BS F1",
}


def results_table(results: Mapping[str, MetricResult], title: str = "MV description metrics (x100)") -> Table:
    bert = _bertscore_label(results)
    comparable = all(r.bertscore_comparable_to_paper is not False for r in results.values())
    title += "\nRL = ROUGE-L"
    if bert is not None:
        title += f", BS = BERTScore {bert}" + ("" if comparable else f" - {NOT_COMPARABLE}")
    columns = [key for key, _ in SCORE_COLUMNS if bert is not None or not key.startswith("bertscore")]
    table = Table(title=title)
    table.add_column("predictions", overflow="fold")
    table.add_column("n", justify="right")
    for key in columns:
        table.add_column(_LABELS[key], justify="right")
    for name, result in results.items():
        values = [getattr(result, key) for key in columns]
        table.add_row(escape(name), str(result.n), *("-" if v is None else f"{v:.1f}" for v in values))
    if bert is not None and not comparable:
        table.caption = f"BERTScore with {bert}: {NOT_COMPARABLE} (roberta-large L17)"
    return table


def report_json(results: Mapping[str, MetricResult], settings: dict, sources: Mapping[str, dict] | None = None) -> dict:
    """Every number and the metric settings; ``sources`` adds per-row facts (file path, runs)."""
    rows = []
    for name, result in results.items():
        row = {"name": name, **(sources or {}).get(name, {})}
        row.update(result.model_dump())
        rows.append(row)
    return {"settings": settings, "results": rows}
