"""The paper's Table 1 on a test split: every input combination, the sanity check and two baselines.

    python eval/leaderboard.py --config eval/leaderboard.yaml [--no-cache] [--root DIR]

The YAML names the dataset, split, audio root, BERTScore model/layer, decoding overrides (each run
decodes with its own ``generation_config.json``; keys given here replace its values for every row) and the
rows ``{name, group, run_dir | predictions | base_model, eval_inputs}``. Predictions are cached
per (run, eval inputs, decoding) under ``out_dir/predictions/``, so adding a row generates only
that row; ``--no-cache`` regenerates every row. All rows are scored in one ``score_many`` call
(one BERTScore model, shared embeddings), and rows that cannot share a table are refused: a run
trained against a different test split, a predictions file over different ids, or a row asking
for other metric settings.

Writes ``leaderboard.md`` (Table 1 layout, top three of each column in bold), ``.csv``, ``.json``
and ``leaderboard.png``. Each row's structure and music faithfulness (``mv4all.metrics.quality``,
checked against the split's measured facts) follow as a second table, "Beyond n-gram overlap",
and as extra JSON/CSV fields; Table 1 itself is unchanged.
``eval/demo.py`` runs the demo's table (``leaderboard.demo.yaml``).
"""

# This script runs the steps in order and refuses what cannot share a table; the steps live in
# leaderboard_config (the YAML), leaderboard_runs (training missing runs, generating and caching
# predictions) and leaderboard_report (the markdown, JSON, CSV and chart).

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from eval.leaderboard_config import (
    DEMO_CONFIG,
    GROUPS,
    PAPER_CONFIG,
    Config,
    LeaderboardError,
    Row,
    load_config,
    resolve_bertscore_model,
)
from eval.leaderboard_report import BASELINE_NOTE, GROUP_TITLES, render_markdown, top_k, write_leaderboard
from eval.leaderboard_runs import cache_path, ensure_predictions, generate_row, row_decoding, train_missing_runs

__all__ = [  # the recipe's interface (tests, eval/demo.py, mv4all demo)
    "BASELINE_NOTE", "DEMO_CONFIG", "GROUPS", "GROUP_TITLES", "PAPER_CONFIG", "Config", "LeaderboardError",
    "LeaderboardResult", "Row", "cache_path", "check_comparable", "generate_row", "load_config", "main",
    "make_parser", "render_markdown", "row_decoding", "run_leaderboard", "top_k", "train_missing_runs",
]


@dataclass
class LeaderboardResult:
    """What ``run_leaderboard`` made: the rows as scored, their metrics, the files written."""

    rows: list[Row]
    results: dict  # name -> MetricResult
    files: dict[str, Path]
    generated: list[str] = field(default_factory=list)  # rows whose predictions were (re)computed
    test_ids_sha256: str = ""
    markdown: str = ""
    predictions: dict[str, Path] = field(default_factory=dict)  # row name -> its predictions JSONL
    quality: dict = field(default_factory=dict)  # name -> QualityResult (mv4all.metrics.quality_table prints it)
    quality_markdown: str = ""  # the second table, after Table 1 in leaderboard.md


def _table_metrics(cfg: Config) -> dict:
    return {"model": cfg.bertscore_model, "layer": cfg.bertscore_layer}


def check_comparable(cfg: Config, split_hash: str) -> None:
    """Refuse rows that cannot stand in one table (before any generation is paid for)."""
    from mv4all.model.run import read_run_info

    table = _table_metrics(cfg)
    for row in cfg.rows:
        if row.metrics is not None:
            mine = {"model": row.metrics.get("model", table["model"]),
                    "layer": row.metrics.get("layer", table["layer"])}
            if mine != table:
                raise LeaderboardError(f"row {row.name!r} asks for metric settings {mine}, the table uses {table}: "
                                       "rows scored differently cannot share one table")
        if row.run_dir is not None and (row.run_dir / "run.json").is_file():
            info = read_run_info(row.run_dir)
            theirs = (info.get("dataset") or {}).get("test_ids_sha256")
            if theirs and theirs != split_hash:
                raise LeaderboardError(
                    f"row {row.name!r}: run {row.run_dir} was trained with a dataset whose test split has ids hash "
                    f"{theirs[:12]}, but this table evaluates {cfg.dataset} ({cfg.split}) "
                    f"with ids hash {split_hash[:12]}: "
                    "rows from different splits are refused in one table")


def run_leaderboard(
    config: str | os.PathLike | dict | Config,
    *,
    no_cache: bool = False,
    root: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> LeaderboardResult:
    """Generate what is missing, check comparability, score every row together and write the files."""
    from mv4all.describe import load_split
    from mv4all.metrics import dataset_facts, metric_settings, quality_scores, score_many
    from mv4all.metrics.bertscore import BertScorer
    from mv4all.model.run import ids_sha256
    from mv4all.safety import claim_folder

    log = log or (lambda message: print(message, file=sys.stderr))
    cfg = config if isinstance(config, Config) else load_config(config, root)
    if out_dir is not None:
        cfg.out_dir = Path(out_dir)
    claim_folder(cfg.out_dir, "leaderboard", legacy=("leaderboard.json",), option="another out_dir")
    split_rows = load_split(cfg.dataset, cfg.split)
    references = {r["id"]: r["mv_description_text"] for r in split_rows}
    split_hash = ids_sha256(references)
    check_comparable(cfg, split_hash)
    scorer = None
    if cfg.bertscore_model is not None or cfg.bertscore_layer is not None:  # fail fast on an unusable model
        scorer = BertScorer(resolve_bertscore_model(cfg.bertscore_model), cfg.bertscore_layer,
                            device=cfg.device or "cpu", batch_size=32)
    trained, fresh = train_missing_runs(cfg, log, generate=True)
    for run_dir in trained:
        check_comparable(Config(**{**cfg.__dict__, "rows": [r for r in cfg.rows if r.run_dir == run_dir]}),
                         split_hash)
    paths, decodings, generated = ensure_predictions(cfg, set(references), fresh, no_cache, log)
    preds, refs, ids = _scoring_inputs(cfg, paths, references, split_hash, decodings)
    results = score_many(preds, refs, bertscore=scorer is not None, scorer=scorer)
    settings = metric_settings(scorer.spec if scorer else None)
    facts = dataset_facts(cfg.dataset, cfg.split)  # the measured facts faithfulness checks claims against
    quality = {name: quality_scores(texts, [facts[i] for i in ids[name]]) for name, texts in preds.items()}
    markdown, quality_markdown, files = write_leaderboard(cfg, results, settings, split_hash, paths, decodings,
                                                          quality)
    return LeaderboardResult(rows=cfg.rows, results=results, files=files, generated=generated,
                             test_ids_sha256=split_hash, markdown=markdown, predictions=dict(paths),
                             quality=quality, quality_markdown=quality_markdown)


def _scoring_inputs(cfg: Config, paths: dict[str, Path], references: dict[str, str], split_hash: str,
                    decodings: dict[str, dict]) -> tuple[dict[str, list[str]], ...]:
    """(predictions, references, ids) per row, in id order; a file over other ids than the split's is refused.
    Rows given as a predictions file take their inputs and decoding from it."""
    from mv4all.metrics import read_predictions
    from mv4all.model.run import ids_sha256

    preds: dict[str, list[str]] = {}
    refs: dict[str, list[str]] = {}
    order_ids: dict[str, list[str]] = {}
    for row in cfg.rows:
        records = read_predictions(paths[row.name])
        ids = [p.id for p in records]
        if ids_sha256(ids) != split_hash:
            raise LeaderboardError(
                f"row {row.name!r}: {paths[row.name]} covers {len(ids)} ids (sha256 {ids_sha256(ids)[:12]}), not the "
                f"{len(references)} ids of {cfg.dataset} ({cfg.split}, sha256 {split_hash[:12]}): refused in one table")
        if row.train_inputs is None and records[0].train_inputs:
            row.train_inputs = records[0].train_inputs
        if row.eval_inputs is None and records[0].eval_inputs:
            row.eval_inputs = records[0].eval_inputs
        decodings.setdefault(row.name, records[0].decoding)
        order = sorted(records, key=lambda p: p.id)
        preds[row.name] = [p.prediction for p in order]
        refs[row.name] = [references[p.id] for p in order]
        order_ids[row.name] = [p.id for p in order]
    return preds, refs, order_ids


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path, help="leaderboard YAML (eval/leaderboard.yaml)")
    parser.add_argument("--no-cache", action="store_true", help="regenerate every row's predictions")
    parser.add_argument("--root", type=Path, help="folder the YAML's relative paths start from [the YAML's root: key, "
                                                   "else its folder]")
    parser.add_argument("--out-dir", type=Path, help="where to write the table and the prediction cache")
    return parser


def main(args: argparse.Namespace) -> LeaderboardResult:
    from mv4all.metrics import PredictionsError

    try:
        result = run_leaderboard(args.config, no_cache=args.no_cache, root=args.root, out_dir=args.out_dir)
    except (LeaderboardError, PredictionsError, FileNotFoundError, ValueError, OSError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {text}", file=sys.stderr)
        raise SystemExit(2) from None
    print(result.markdown)
    print(result.quality_markdown)
    print("wrote " + ", ".join(str(p) for p in result.files.values()), file=sys.stderr)
    return result


if __name__ == "__main__":
    main(make_parser().parse_args())
