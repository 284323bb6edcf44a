"""The leaderboard's files: ``leaderboard.md`` (the paper's Table 1 layout: groups, input marks,
top three of each column in bold), ``.json`` (scores, metric settings, each row's source and
decoding), ``.csv`` and a bar chart ``.png``.

Table 1 scores wording against one reference; it cannot say whether a description fits its music.
So the files also carry ``mv4all.metrics.quality``'s numbers (structure, music faithfulness) as a
second table *after* Table 1, a ``quality`` block per JSON row and ``q_*`` CSV columns appended after
the existing ones: Table 1, its columns and its chart stay exactly as they were, so readers of the
old files keep working.

Rows of different backbones (``mv4all``, ``qwen2-audio``, ...) share one table when their test ids and
metric settings match: the Setting cell then names each row's backbone in brackets, a note under the
title says what each is, and every JSON row has ``backbone``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from eval.leaderboard_config import GROUPS, Config, Row
from mv4all.metrics.faithfulness import CLAIM_TYPES
from mv4all.metrics.quality import TABLE_TYPES, QualityResult

GROUP_TITLES = {"baseline": "Baselines", "main": "All inputs",
                "ablation": "Ablations (trained and evaluated on the same inputs)",
                "sanity": "Sanity check (inputs removed at inference)"}
CIRCLED = {1: "①", 2: "②", 3: "③", 4: "④"}
TOP_K = 3
BASELINE_NOTE = (
    "Baselines differ from the paper's: the paper's zero-shot row is NExT-GPT (Vicuna-7B + ImageBind, "
    "pre-trained on its own instruction data), ours `stage1-zeroshot` is our stage-1 checkpoint (projector "
    "aligned on music captions, no LoRA, never trained on MV descriptions) prompted with inputs 1+2+3+4; "
    "`llm-text-only` is the base LLM alone with inputs 2+3+4 (no audio, no training). A randomly "
    "initialised projector is never used as a baseline."
)


def top_k(values: list[float | None], k: int = TOP_K) -> set[int]:
    """Indices of the top ``k`` as displayed (one decimal); ties with the k-th are bold too."""
    shown = [None if v is None else round(v, 1) for v in values]
    ranked = sorted((v for v in shown if v is not None), reverse=True)
    if not ranked:
        return set()
    cut = ranked[min(k, len(ranked)) - 1]
    return {i for i, v in enumerate(shown) if v is not None and v >= cut}


def backbones(rows: list[Row]) -> list[str]:
    """The model families in a table, in order of appearance (rows without one, e.g. base LLMs, aside)."""
    return list(dict.fromkeys(r.backbone for r in rows if r.backbone))


def row_label(row: Row, rows: list[Row]) -> str:
    """The Setting cell: the row's name, with its backbone when the table mixes backbones (or has no mv4all one)."""
    families = backbones(rows)
    if row.backbone and (len(families) > 1 or families != ["mv4all"]) and row.backbone not in row.name:
        return f"{row.name} [{row.backbone}]"
    return row.name


def _backbone_note(rows: list[Row]) -> str | None:
    families = backbones(rows)
    if len(families) <= 1 and families in ([], ["mv4all"]):
        return None
    from mv4all.model.backbones import BACKBONES

    parts = [f"`{name}`: {BACKBONES[name].description}" if name in BACKBONES else f"`{name}`" for name in families]
    return ("Backbones (in brackets after each setting; same test ids and metric settings for every row): "
            + "; ".join(parts) + ".")


def _inputs_marks(inputs: str | None) -> list[str]:
    from mv4all.inputs import parse_combination

    combo = parse_combination(inputs or "none")
    return ["✓" if m in combo else "" for m in (1, 2, 3, 4)]


def render_markdown(cfg: Config, rows: list[Row], results: dict, settings: dict, split_hash: str) -> str:
    from mv4all.metrics import SCORE_COLUMNS

    bert = settings.get("bertscore") or {}
    model = bert.get("model")
    if model and Path(str(model)).is_dir():
        model = "/".join(Path(str(model)).resolve().parts[-2:])
    bert_label = f"BERTScore ({model}, layer {bert.get('layer')})" if bert else "BERTScore (off)"
    keys = [k for k, _ in SCORE_COLUMNS]
    bold = {k: top_k([getattr(results[r.name], k) for r in rows]) for k in keys}
    header = ["Setting", "Trained on", *(CIRCLED[m] for m in (1, 2, 3, 4)), "BLEU-1", "BLEU-4",
              "ROUGE-L P", "ROUGE-L R", "ROUGE-L F1", "BERTScore P", "BERTScore R", "BERTScore F1"]
    title = (f"# {cfg.title}: music-to-MV description on `{cfg.dataset.name}` ({cfg.split}, "
             f"n={next(iter(results.values())).n}, test ids sha256 {split_hash[:12]})")
    lines = [title, "", f"**{bert_label}**", "",
             f"Scores x100. Inputs at inference: ① music ② genre tags ③ MV type tag ④ lyrics understanding. "
             f"Top {TOP_K} of each column in **bold** (ties included)."
             + ("" if bert.get("comparable_to_paper", True) else
                f" {bert_label} is not comparable to the paper's BERTScore (roberta-large, layer 17)."), "",
             *((note, "") if (note := _backbone_note(rows)) else ()),
             "| " + " | ".join(header) + " |", "|" + "---|" * 2 + ":-:|" * 4 + "--:|" * 8]
    for group in GROUPS:
        members = [(i, r) for i, r in enumerate(rows) if r.group == group]
        if not members:
            continue
        lines.append(f"| *{GROUP_TITLES[group]}* |" + " |" * (len(header) - 1))
        for i, row in members:
            res = results[row.name]
            cells = []
            for k in keys:
                v = getattr(res, k)
                text = "-" if v is None else f"{v:.1f}"
                cells.append(f"**{text}**" if i in bold[k] else text)
            trained = row.trained_label or row.train_inputs or ("— (base LLM)" if row.base_model else "?")
            lines.append(f"| {row_label(row, rows)} | {trained} | " + " | ".join(_inputs_marks(row.eval_inputs)) + " | "
                         + " | ".join(cells) + " |")
    lines += ["", f"*Note.* {BASELINE_NOTE}", ""]
    return "\n".join(lines)


QUALITY_TITLE = "Beyond n-gram overlap"
# (key of quality_values, markdown header): the columns of ``quality_table``; the CSV has all the keys.
QUALITY_MD_COLUMNS = [("parse_rate", "parse"), ("parse_rate_10", "≥10 frames"), ("mean_frames", "mean frames"),
                      ("truncation_rate", "truncated"), ("repetition", "repeated 4-grams"),
                      ("faithfulness", "faithfulness"), ("claim_coverage", "claim coverage"),
                      *((f"{t}_precision", f"{t} P") for t in TABLE_TYPES)]


def quality_values(result: QualityResult) -> dict[str, float | None]:
    """A row's quality numbers, x100 like Table 1 (``mean_frames`` is a count); None = nothing to measure
    (no faithfulness without the clips' facts, no precision for a claim type never made)."""
    s, f = result.structure, result.faithfulness

    def pct(v: float | None) -> float | None:
        return None if v is None else 100 * v

    values = {"parse_rate": pct(s.parse_rate), "parse_rate_10": pct(s.parse_rate_10), "mean_frames": s.mean_frames,
              "truncation_rate": pct(s.truncation_rate), "repetition": pct(s.repetition),
              "faithfulness": pct(f.score) if f else None, "claim_coverage": pct(f.coverage) if f else None}
    for t in CLAIM_TYPES:
        values[f"{t}_precision"] = pct(f.per_type[t].precision) if f and t in f.per_type else None
    return values


def render_quality_markdown(rows: list[Row], quality: dict[str, QualityResult]) -> str:
    """The second table: one line per row, grouped like Table 1, no bold (lower is better for some columns)."""
    header = ["Setting", "n", *(label for _, label in QUALITY_MD_COLUMNS)]
    lines = [f"## {QUALITY_TITLE}", "",
             "Not in the paper. Shares x100 over each row's predictions. *parse*: an overview and at least one "
             "numbered frame; *≥10 frames*: the same with 10 or more (15 expected); *truncated*: ends mid-sentence; "
             "*repeated 4-grams*: 1 - distinct / all 4-grams. *faithfulness*: right / checked musical claims (tempo, "
             "key, meter, energy, mood, danceability, MV type, genre) against the clip's measured features; "
             "*claim coverage*: predictions making at least one checkable claim; *P*: precision of one claim type, "
             "- when none was made (all types in the JSON).", "",
             "| " + " | ".join(header) + " |", "|---|" + "--:|" * (len(header) - 1)]
    for group in GROUPS:
        members = [r for r in rows if r.group == group]
        if not members:
            continue
        lines.append(f"| *{GROUP_TITLES[group]}* |" + " |" * (len(header) - 1))
        for row in members:
            values = quality_values(quality[row.name])
            cells = ["-" if values[k] is None else f"{values[k]:.1f}" for k, _ in QUALITY_MD_COLUMNS]
            lines.append(f"| {row_label(row, rows)} | {quality[row.name].n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_chart(path: Path, rows: list[Row], results: dict, bert_label: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = [("bleu_1", "BLEU-1"), ("rouge_l_f1", "ROUGE-L F1"), ("bertscore_f1", bert_label)]
    metrics = [(k, label) for k, label in metrics if all(getattr(results[r.name], k) is not None for r in rows)]
    x = np.arange(len(rows))
    width = 0.8 / max(1, len(metrics))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(rows) + 2), 4.5))
    for j, (key, label) in enumerate(metrics):
        ax.bar(x + (j - (len(metrics) - 1) / 2) * width,
               [getattr(results[r.name], key) for r in rows], width, label=label)
    ax.set_xticks(x, [row_label(r, rows) for r in rows], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("score x100")
    ax.set_title("MV description metrics per setting")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_leaderboard(cfg: Config, results: dict, settings: dict, split_hash: str, paths: dict[str, Path],
                      decodings: dict[str, dict],
                      quality: dict[str, QualityResult]) -> tuple[str, str, dict[str, Path]]:
    """Write the four files into ``cfg.out_dir``; return Table 1's markdown, the second table's and the files
    by extension. The JSON's ``quality`` blocks are ``QualityResult.to_dict()``: fractions 0..1 with the
    claim counts, unlike the x100 scores next to them."""
    from mv4all.metrics import SCORE_COLUMNS, report_json
    from mv4all.safety import atomic_write_text

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(cfg, cfg.rows, results, settings, split_hash)
    quality_markdown = render_quality_markdown(cfg.rows, quality)
    files = {"md": cfg.out_dir / "leaderboard.md", "csv": cfg.out_dir / "leaderboard.csv",
             "json": cfg.out_dir / "leaderboard.json", "png": cfg.out_dir / "leaderboard.png"}
    atomic_write_text(files["md"], markdown + "\n" + quality_markdown)
    sources = {r.name: {"group": r.group, "train_inputs": r.train_inputs, "eval_inputs": r.eval_inputs,
                        "source": r.source, "predictions": str(paths[r.name]), "decoding": decodings.get(r.name),
                        "backbone": r.backbone}
               for r in cfg.rows}
    report = report_json(results, settings, sources)
    report.update({"dataset": str(cfg.dataset), "split": cfg.split, "test_ids_sha256": split_hash,
                   "decoding_overrides": cfg.decoding, "note": BASELINE_NOTE,
                   "quality_note": "quality: structure and music faithfulness (mv4all.metrics.quality), fractions "
                                   "0..1; not in the paper's Table 1"})
    for entry in report["results"]:
        entry["quality"] = quality[entry["name"]].to_dict()
    atomic_write_text(files["json"], json.dumps(report, indent=2) + "\n")
    quality_keys = list(quality_values(next(iter(quality.values()))))  # the same keys for every row
    with files["csv"].open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "group", "train_inputs", "eval_inputs", "n", *(k for k, _ in SCORE_COLUMNS),
                         "bertscore_model", "bertscore_layer", "source", "decoding",
                         *(f"q_{k}" for k in quality_keys)])
        for r in cfg.rows:
            res = results[r.name]
            writer.writerow([r.name, r.group, r.train_inputs, r.eval_inputs, res.n,
                             *("" if getattr(res, k) is None else f"{getattr(res, k):.4f}" for k, _ in SCORE_COLUMNS),
                             res.bertscore_model, res.bertscore_layer, r.source,
                             json.dumps(decodings.get(r.name), sort_keys=True),
                             *("" if v is None else f"{v:.4f}" for v in quality_values(quality[r.name]).values())])
    bert = settings.get("bertscore") or {}
    write_chart(files["png"], cfg.rows, results, f"BERTScore F1 (L{bert.get('layer')})" if bert else "BERTScore F1")
    return markdown, quality_markdown, files
