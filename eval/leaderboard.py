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
and ``leaderboard.png``. ``eval/demo.py`` runs the demo's table (``leaderboard.demo.yaml``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "eval" / "leaderboard.demo.yaml"  # the table mv4all demo prints (eval/demo.py)
PAPER_CONFIG = REPO / "eval" / "leaderboard.yaml"
GROUPS = ("baseline", "main", "ablation", "sanity")
GROUP_TITLES = {"baseline": "Baselines", "main": "All inputs", "ablation": "Ablations (trained and evaluated on the same inputs)",
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


class LeaderboardError(ValueError):
    """The configuration cannot produce one comparable table."""


# --------------------------------------------------------------------------- configuration


@dataclass
class Row:
    name: str
    group: str
    eval_inputs: str | None = None
    run_dir: Path | None = None
    predictions: Path | None = None
    base_model: str | None = None
    train_inputs: str | None = None  # for train_missing, and the table's "trained on" column
    trained_label: str | None = None  # "Trained on" cell; defaults to train_inputs
    metrics: dict | None = None  # per-row metric settings: must equal the table's

    @property
    def source(self) -> str:
        return str(self.run_dir or self.predictions or self.base_model)


@dataclass
class Config:
    path: Path | None
    dataset: Path
    split: str
    audio_root: Path | None
    out_dir: Path
    bertscore_model: str | None
    bertscore_layer: int | None
    decoding: dict
    rows: list[Row]
    device: str | None = None
    train_missing: dict | None = None
    title: str = "Table 1"
    base: Path = Path(".")


def _resolve(value: Any, base: Path) -> Path | None:
    if value in (None, ""):
        return None
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else (base / path)


def resolve_bertscore_model(name: str | None) -> str | None:
    """``pkg:module`` names a Python package that ships a model folder (``get_model_path()``)."""
    if name and str(name).startswith("pkg:"):
        import importlib

        return str(importlib.import_module(str(name)[4:]).get_model_path())
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RowSpec(_Strict):
    name: str | None = None
    group: str | None = None
    run_dir: str | None = None
    predictions: str | None = None
    base_model: str | None = None
    eval_inputs: str | None = None
    train_inputs: str | None = None
    trained_label: str | None = None
    metrics: dict | None = None


class DecodingSpec(_Strict):
    strategy: str | None = None
    max_new_tokens: int | None = None
    num_beams: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    no_repeat_ngram_size: int | None = None
    repetition_penalty: float | None = None
    batch_size: int | None = None
    seed: int | None = None


class BertSpec(_Strict):
    model: str | None = None
    layer: int | None = None


class TrainMissingSpec(_Strict):
    config: str = "train/configs/tiny.yaml"
    stage: int = 2
    overrides: dict = Field(default_factory=dict)
    parallel: int = Field(default=1, ge=1)  # runs trained at once, one process each (small CPU models)


class LeaderboardSpec(_Strict):
    """The YAML, checked strictly: a misspelt key is an error, not a silent default."""

    title: str = "Table 1"
    root: str | None = None
    dataset: str
    split: str = "test"
    audio_root: str | None = None
    out_dir: str = "leaderboard"
    device: str | None = None
    bertscore: BertSpec = Field(default_factory=BertSpec)
    decoding: DecodingSpec = Field(default_factory=DecodingSpec)
    train_missing: TrainMissingSpec | None = None
    rows: list[RowSpec]


def _spec_error(exc: ValidationError, where) -> LeaderboardError:
    """One line per problem, with a suggestion for a misspelt key."""
    import difflib

    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            key = str(err["loc"][-1])
            model = {"rows": RowSpec, "decoding": DecodingSpec, "bertscore": BertSpec,
                     "train_missing": TrainMissingSpec}.get(str(err["loc"][0]), LeaderboardSpec)
            if len(err["loc"]) == 1:
                model = LeaderboardSpec
            close = difflib.get_close_matches(key, list(model.model_fields), n=1)
            problems.append(f"unknown key {loc!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        else:
            problems.append(f"{loc}: {err['msg']}")
    return LeaderboardError(f"{where or 'the leaderboard config'}: " + "; ".join(problems))


def load_config(path: str | os.PathLike | dict, root: str | os.PathLike | None = None) -> Config:
    """Read the YAML (or an equivalent dict); relative paths are relative to ``root`` (default: the YAML's folder,
    or the ``root`` key when it is given)."""
    from mv4all.inputs import parse_combination

    if isinstance(path, dict):
        raw, where = path, None
    else:
        where = Path(path)
        try:
            raw = yaml.safe_load(where.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise LeaderboardError(f"cannot read the leaderboard config {where}: {exc}") from None
    if not isinstance(raw, dict) or not raw.get("dataset"):
        raise LeaderboardError("the config needs `dataset:` (a built dataset folder)")
    try:
        spec = LeaderboardSpec.model_validate(raw)
    except ValidationError as exc:
        raise _spec_error(exc, where) from None
    raw = spec.model_dump(exclude_none=True)
    raw["decoding"] = spec.decoding.model_dump(exclude_none=True)
    raw["rows"] = [row.model_dump(exclude_none=True) for row in spec.rows]
    base = Path(root) if root is not None else _resolve(raw.get("root"), where.parent if where else Path.cwd()) \
        or (where.parent if where else Path.cwd())
    if not raw.get("dataset"):
        raise LeaderboardError("the config needs `dataset:` (a built dataset folder)")
    bert = raw.get("bertscore") or {}
    rows: list[Row] = []
    for i, item in enumerate(raw.get("rows") or []):
        name = item.get("name") or f"row {i + 1}"
        group = item.get("group")
        if group not in GROUPS:
            raise LeaderboardError(f"row {name!r}: group must be one of {', '.join(GROUPS)}, got {group!r}")
        sources = [k for k in ("run_dir", "predictions", "base_model") if item.get(k)]
        if len(sources) != 1:
            raise LeaderboardError(f"row {name!r}: give exactly one of run_dir, predictions, base_model")
        try:
            eval_inputs = None if item.get("eval_inputs") is None else parse_combination(str(item["eval_inputs"])).name
            train_inputs = None if item.get("train_inputs") is None else parse_combination(str(item["train_inputs"])).name
        except ValueError as exc:
            raise LeaderboardError(f"row {name!r}: {exc}") from None
        base_model = item.get("base_model")
        if base_model and _resolve(base_model, base).exists():
            base_model = str(_resolve(base_model, base))
        rows.append(Row(name=name, group=group, eval_inputs=eval_inputs, run_dir=_resolve(item.get("run_dir"), base),
                        predictions=_resolve(item.get("predictions"), base), base_model=base_model,
                        train_inputs=train_inputs, metrics=item.get("metrics")))
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise LeaderboardError(f"row names must be unique: {sorted({n for n in names if names.count(n) > 1})}")
    if not rows:
        raise LeaderboardError("the config lists no rows")
    return Config(
        path=where, dataset=_resolve(raw["dataset"], base), split=str(raw.get("split", "test")),
        audio_root=_resolve(raw.get("audio_root"), base), out_dir=_resolve(raw.get("out_dir", "leaderboard"), base),
        bertscore_model=bert.get("model"), bertscore_layer=bert.get("layer"), decoding=dict(raw.get("decoding") or {}),
        rows=rows, device=raw.get("device"), train_missing=raw.get("train_missing"), title=raw.get("title", "Table 1"),
        base=base,
    )


# --------------------------------------------------------------------------- predictions cache


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9+._-]+", "_", text).strip("_")[:60] or "row"


def cache_key(row: Row, decoding: dict) -> str:
    """Same run + same eval inputs + same decoding = same predictions, whatever the row is called."""
    source = str(Path(row.run_dir).resolve()) if row.run_dir else str(row.base_model)
    # run.json changes whenever the run is retrained (timestamp, loss), so stale predictions are never served.
    run_file = Path(row.run_dir) / "run.json" if row.run_dir else None
    trained = hashlib.sha256(run_file.read_bytes()).hexdigest() if run_file and run_file.is_file() else None
    blob = json.dumps({"source": source, "run": trained, "eval_inputs": row.eval_inputs, "decoding": decoding},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cache_path(cfg: Config, row: Row, decoding: dict) -> Path:
    source = row.run_dir.name if row.run_dir else Path(str(row.base_model)).name
    return cfg.out_dir / "predictions" / f"{_slug(source)}__{_slug(row.eval_inputs or 'train')}__{cache_key(row, decoding)}.jsonl"


def _missing_run_args(cfg: Config, row: Row) -> tuple[Path, int, dict]:
    """(config, stage, overrides) that train a stage-2 run a row needs but that does not exist yet."""
    spec = cfg.train_missing or {}
    if not row.train_inputs:
        raise LeaderboardError(f"row {row.name!r}: {row.run_dir} does not exist and the row has no train_inputs")
    config = _resolve(spec.get("config", "train/configs/tiny.yaml"), REPO)
    overrides = dict(spec.get("overrides") or {})
    for key in ("dataset", "audio_root", "language_model", "audio_encoder_path", "init_from"):
        if overrides.get(key) and _resolve(overrides[key], cfg.base).exists():
            overrides[key] = str(_resolve(overrides[key], cfg.base))
    overrides.update(output_dir=str(row.run_dir), inputs=row.train_inputs, disable_tqdm=True)
    return config, int(spec.get("stage", 2)), overrides


def _train_one(config: Path, stage: int, overrides: dict, then: tuple = ()) -> tuple[str, list[str]]:
    """Train one run, then generate the predictions of its table rows ``then`` (``(cfg, row)`` pairs)
    in the same process, while the other runs still train. Returns the run and the files written."""
    from train import sft

    run = str(sft.train(config, stage, overrides))
    written = []
    for cfg, row in then:
        row.eval_inputs = row.eval_inputs or row.train_inputs
        path = cache_path(cfg, row, row_decoding(cfg, row).record())
        path.parent.mkdir(parents=True, exist_ok=True)
        generate_row(cfg, row, path, lambda message: print(message, flush=True))
        written.append(str(path))
    return run, written


def train_missing_runs(cfg: Config, log: Callable[[str], None], generate: bool = False) -> tuple[list[Path], set[Path]]:
    """Train every run the rows name that does not exist yet, ``parallel`` of them at a time.

    With ``generate`` each worker also writes the predictions of its run's rows right after
    training (one model load, overlapped with the runs still training). Returns the trained runs
    and the prediction files written.
    """
    missing: dict[Path, list[Row]] = {}
    for row in cfg.rows:
        if row.run_dir is not None and not row.run_dir.is_dir():
            if not cfg.train_missing:
                raise LeaderboardError(f"row {row.name!r}: run directory {row.run_dir} does not exist")
            missing.setdefault(row.run_dir, []).append(row)
    jobs = []
    for run_dir, rows in missing.items():
        config, stage, overrides = _missing_run_args(cfg, rows[0])
        log(f"training missing run {run_dir} (inputs {rows[0].train_inputs})")
        jobs.append((config, stage, overrides, tuple((cfg, row) for row in rows) if generate else ()))
    parallel = min(int((cfg.train_missing or {}).get("parallel", 1)), len(jobs))
    if parallel <= 1:
        results = [_train_one(*job) for job in jobs]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a fresh interpreter per worker (torch and fork do not mix); each run sets its own threads
        with ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_train_one, *zip(*jobs)))
    return [Path(run) for run, _ in results], {Path(p) for _, written in results for p in written}


def row_decoding(cfg: Config, row: Row):
    """A row's decoding: its run's ``generation_config.json`` (sized to its targets), then the table's ``decoding:``."""
    from mv4all.describe import Decoding, load_generation_config

    own = load_generation_config(row.run_dir) if row.run_dir is not None and row.run_dir.is_dir() else None
    return (own or Decoding()).replace(**cfg.decoding)


def generate_row(cfg: Config, row: Row, path: Path, log: Callable[[str], None]) -> None:
    from mv4all.describe import Describer, predict_split

    decoding = row_decoding(cfg, row)
    if row.run_dir is not None:
        describer = Describer.from_run(row.run_dir, inputs=row.eval_inputs, decoding=decoding, device=cfg.device,
                                       run_name=row.run_dir.name)
    else:
        describer = Describer.from_base_llm(row.base_model, inputs=row.eval_inputs or "2+3+4", decoding=decoding,
                                            device=cfg.device, run_name=f"base:{Path(str(row.base_model)).name}")
    started = time.perf_counter()
    predict_split(describer, cfg.dataset, path, split=cfg.split, audio_root=cfg.audio_root)
    log(f"{row.name}: predictions in {time.perf_counter() - started:.1f} s -> {path}")


# --------------------------------------------------------------------------- checks


def _table_metrics(cfg: Config) -> dict:
    return {"model": cfg.bertscore_model, "layer": cfg.bertscore_layer}


def check_comparable(cfg: Config, split_hash: str) -> None:
    """Refuse rows that cannot stand in one table (before any generation is paid for)."""
    from mv4all.model.run import read_run_info

    table = _table_metrics(cfg)
    for row in cfg.rows:
        if row.metrics is not None:
            mine = {"model": row.metrics.get("model", table["model"]), "layer": row.metrics.get("layer", table["layer"])}
            if mine != table:
                raise LeaderboardError(f"row {row.name!r} asks for metric settings {mine}, the table uses {table}: "
                                       "rows scored differently cannot share one table")
        if row.run_dir is not None and (row.run_dir / "run.json").is_file():
            info = read_run_info(row.run_dir)
            theirs = (info.get("dataset") or {}).get("test_ids_sha256")
            if theirs and theirs != split_hash:
                raise LeaderboardError(
                    f"row {row.name!r}: run {row.run_dir} was trained with a dataset whose test split has ids hash "
                    f"{theirs[:12]}, but this table evaluates {cfg.dataset} ({cfg.split}) with ids hash {split_hash[:12]}: "
                    "rows from different splits are refused in one table")


# --------------------------------------------------------------------------- the table


@dataclass
class LeaderboardResult:
    rows: list[Row]
    results: dict  # name -> MetricResult
    files: dict[str, Path]
    generated: list[str] = field(default_factory=list)  # rows whose predictions were (re)computed
    test_ids_sha256: str = ""
    markdown: str = ""
    predictions: dict[str, Path] = field(default_factory=dict)  # row name -> its predictions JSONL


def top_k(values: list[float | None], k: int = TOP_K) -> set[int]:
    """Indices of the top ``k`` as displayed (one decimal); ties with the k-th are bold too."""
    shown = [None if v is None else round(v, 1) for v in values]
    ranked = sorted((v for v in shown if v is not None), reverse=True)
    if not ranked:
        return set()
    cut = ranked[min(k, len(ranked)) - 1]
    return {i for i, v in enumerate(shown) if v is not None and v >= cut}


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
            lines.append(f"| {row.name} | {trained} | " + " | ".join(_inputs_marks(row.eval_inputs)) + " | "
                         + " | ".join(cells) + " |")
    lines += ["", f"*Note.* {BASELINE_NOTE}", ""]
    return "\n".join(lines)


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
        ax.bar(x + (j - (len(metrics) - 1) / 2) * width, [getattr(results[r.name], key) for r in rows], width, label=label)
    ax.set_xticks(x, [r.name for r in rows], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("score x100")
    ax.set_title("MV description metrics per setting")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
    from mv4all.metrics import (
        metric_settings,
        read_predictions,
        report_json,
        score_many,
    )
    from mv4all.metrics.bertscore import BertScorer
    from mv4all.model.run import ids_sha256

    log = log or (lambda message: print(message, file=sys.stderr))
    cfg = config if isinstance(config, Config) else load_config(config, root)
    if out_dir is not None:
        cfg.out_dir = Path(out_dir)
    from mv4all.safety import atomic_write_text, claim_folder

    claim_folder(cfg.out_dir, "leaderboard", legacy=("leaderboard.json",), option="another out_dir")
    split_rows = load_split(cfg.dataset, cfg.split)
    references = {r["id"]: r["mv_description_text"] for r in split_rows}
    split_hash = ids_sha256(references)
    check_comparable(cfg, split_hash)
    scorer = None
    if cfg.bertscore_model is not None or cfg.bertscore_layer is not None:  # fail fast on an unusable model
        scorer = BertScorer(resolve_bertscore_model(cfg.bertscore_model), cfg.bertscore_layer,
                            device=cfg.device or "cpu", batch_size=32)
    generated: list[str] = []
    decodings: dict[str, dict] = {}
    paths: dict[str, Path] = {}
    done: set[Path] = set()
    trained, fresh = train_missing_runs(cfg, log, generate=True)
    for run_dir in trained:
        check_comparable(Config(**{**cfg.__dict__, "rows": [r for r in cfg.rows if r.run_dir == run_dir]}),
                         split_hash)
    for row in cfg.rows:
        if row.predictions is not None:
            paths[row.name] = row.predictions
            continue
        if row.run_dir is not None and row.train_inputs is None:
            from mv4all.model.run import read_run_info

            info = read_run_info(row.run_dir)
            row.train_inputs = info.get("inputs")
            if int(info.get("stage", 2)) == 1 and row.trained_label is None:
                row.trained_label = f"stage 1 only ({row.train_inputs}, captions)"
        if row.eval_inputs is None:
            row.eval_inputs = row.train_inputs or "2+3+4"
        decoding = decodings[row.name] = row_decoding(cfg, row).record()
        path = cache_path(cfg, row, decoding)
        paths[row.name] = path
        if path in done:
            continue
        if path in fresh:  # written by the worker that trained the run
            generated.append(row.name)
            done.add(path)
            continue
        if no_cache and path.exists():
            path.unlink()
        have = set()
        if path.is_file():
            have = {p.id for p in read_predictions(path)} if path.stat().st_size else set()
        if have != set(references):
            path.parent.mkdir(parents=True, exist_ok=True)
            generate_row(cfg, row, path, log)
            generated.append(row.name)
        done.add(path)

    preds: dict[str, list[str]] = {}
    refs: dict[str, list[str]] = {}
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
    results = score_many(preds, refs, bertscore=scorer is not None, scorer=scorer)
    settings = metric_settings(scorer.spec if scorer else None)

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(cfg, cfg.rows, results, settings, split_hash)
    files = {"md": cfg.out_dir / "leaderboard.md", "csv": cfg.out_dir / "leaderboard.csv",
             "json": cfg.out_dir / "leaderboard.json", "png": cfg.out_dir / "leaderboard.png"}
    atomic_write_text(files["md"], markdown)
    sources = {r.name: {"group": r.group, "train_inputs": r.train_inputs, "eval_inputs": r.eval_inputs,
                        "source": r.source, "predictions": str(paths[r.name]), "decoding": decodings.get(r.name)}
               for r in cfg.rows}
    report = report_json(results, settings, sources)
    report.update({"dataset": str(cfg.dataset), "split": cfg.split, "test_ids_sha256": split_hash,
                   "decoding_overrides": cfg.decoding, "note": BASELINE_NOTE})
    atomic_write_text(files["json"], json.dumps(report, indent=2) + "\n")
    from mv4all.metrics import SCORE_COLUMNS

    with files["csv"].open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "group", "train_inputs", "eval_inputs", "n", *(k for k, _ in SCORE_COLUMNS),
                         "bertscore_model", "bertscore_layer", "source", "decoding"])
        for r in cfg.rows:
            res = results[r.name]
            writer.writerow([r.name, r.group, r.train_inputs, r.eval_inputs, res.n,
                             *("" if getattr(res, k) is None else f"{getattr(res, k):.4f}" for k, _ in SCORE_COLUMNS),
                             res.bertscore_model, res.bertscore_layer, r.source,
                             json.dumps(decodings.get(r.name), sort_keys=True)])
    bert = settings.get("bertscore") or {}
    write_chart(files["png"], cfg.rows, results, f"BERTScore F1 (L{bert.get('layer')})" if bert else "BERTScore F1")
    return LeaderboardResult(rows=cfg.rows, results=results, files=files, generated=generated,
                             test_ids_sha256=split_hash, markdown=markdown, predictions=dict(paths))


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
    print("wrote " + ", ".join(str(p) for p in result.files.values()), file=sys.stderr)
    return result


if __name__ == "__main__":
    main(make_parser().parse_args())
