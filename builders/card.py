"""Render the dataset card (``dataset_card.md`` template) with the build's real statistics."""

from __future__ import annotations

from pathlib import Path
from string import Template

import yaml

from mv4all.data import configs_yaml

TEMPLATE = Path(__file__).resolve().parent / "templates" / "dataset_card.md"  # package data


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "100K<n<1M"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_card(info: dict, stats: dict, backend) -> str:
    counts = stats["counts"]
    rows_yaml = {cfg: {s: [None] * n for s, n in splits.items()} for cfg, splits in counts.items()}
    configs = yaml.safe_dump(configs_yaml(rows_yaml, info["build_id"]), sort_keys=False).rstrip()
    n_total = sum(counts.get("mv_description", {}).values())
    tempo = stats.get("tempo") or {}
    modes = stats.get("modes", {})
    dropped = stats.get("dropped", [])
    offline = backend.id == "offline"
    values = {
        "size_category": _size_category(n_total),
        "configs_yaml": configs,
        "build_id": info["build_id"],
        "schema_version": info["schema_version"],
        "backend": backend.id,
        "offline_note": (
            "> **Offline build.** The texts in this dataset (frame captions, MV type, lyrics understanding, captions,"
            " MV descriptions) were produced by mv4all's deterministic *offline* backend: templates and rules fed by"
            " measured music and video statistics, not by an LLM. Use `--llm openai` for paper-quality text."
            if offline else ""
        ),
        "counts_table": _table(["config", "train", "test"],
                               [[cfg, splits.get("train", 0), splits.get("test", 0)]
                                for cfg, splits in counts.items()]),
        "mv_type_table": _table(["MV type", "clips"], [[k, v] for k, v in stats.get("mv_type", {}).items()]) or "none",
        "tempo_summary": (f"min {tempo['min']:.1f}, median {tempo['median']:.1f}, max {tempo['max']:.1f}"
                          if tempo else "n/a"),
        "key_summary": ((", ".join(f"{k} {v}" for k, v in modes.items()) + "; most common "
                         + ", ".join(f"{k} ({v})" for k, v in list(stats.get("keys", {}).items())[:5]))
                        if modes else "n/a"),
        "artist_overlap": stats.get("artist_overlap", 0),
        "split_by": info["split"]["by"],
        "split_salt": info["split"]["salt"],
        "dropped_count": len(dropped),
        "failure_count": sum(stats.get("failures_by_stage", {}).values()),
        "dropped_table": _table(["id", "stage", "reason"], [[d["id"], d["stage"], d["reason"]] for d in dropped[:50]])
        if dropped else "",
    }
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(values)
