"""The leaderboard's configuration: the YAML (checked strictly: a misspelt key is an error with a
suggestion), resolved into a ``Config`` whose rows (``Row``) have absolute paths and canonical input
combinations. ``eval/leaderboard.py`` runs it; see its docstring for the keys."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "eval" / "leaderboard.demo.yaml"  # the table mv4all demo prints (eval/demo.py)
PAPER_CONFIG = REPO / "eval" / "leaderboard.yaml"
GROUPS = ("baseline", "main", "ablation", "sanity")


class LeaderboardError(ValueError):
    """The configuration cannot produce one comparable table."""


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
    backbone: str | None = None  # the model family (run.json's backbone; a predictions row may name it)

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


def resolve_path(value: Any, base: Path) -> Path | None:
    """A path from the config: ``~`` expanded, relative ones under ``base``; None when empty."""
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
    backbone: str | None = None


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
    base = Path(root) if root is not None else resolve_path(raw.get("root"), where.parent if where else Path.cwd()) \
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
            train_inputs = (None if item.get("train_inputs") is None
                            else parse_combination(str(item["train_inputs"])).name)
        except ValueError as exc:
            raise LeaderboardError(f"row {name!r}: {exc}") from None
        base_model = item.get("base_model")
        if base_model and resolve_path(base_model, base).exists():
            base_model = str(resolve_path(base_model, base))
        rows.append(Row(name=name, group=group, eval_inputs=eval_inputs,
                        run_dir=resolve_path(item.get("run_dir"), base),
                        predictions=resolve_path(item.get("predictions"), base), base_model=base_model,
                        train_inputs=train_inputs, metrics=item.get("metrics"), backbone=item.get("backbone")))
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise LeaderboardError(f"row names must be unique: {sorted({n for n in names if names.count(n) > 1})}")
    if not rows:
        raise LeaderboardError("the config lists no rows")
    return Config(
        path=where, dataset=resolve_path(raw["dataset"], base), split=str(raw.get("split", "test")),
        audio_root=resolve_path(raw.get("audio_root"), base),
        out_dir=resolve_path(raw.get("out_dir", "leaderboard"), base),
        bertscore_model=bert.get("model"), bertscore_layer=bert.get("layer"), decoding=dict(raw.get("decoding") or {}),
        rows=rows, device=raw.get("device"), train_missing=raw.get("train_missing"), title=raw.get("title", "Table 1"),
        base=base,
    )
