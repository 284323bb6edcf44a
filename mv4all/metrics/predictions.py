"""Reading predictions files and pairing each line with its reference.

A predictions file is JSONL, one ``mv4all.schema.Prediction`` per line; anything with at
least ``id`` and ``prediction`` is accepted so that outputs of other systems can be scored
too. References come from the line or, by id, from a built dataset folder, so one
reference set serves every system on a leaderboard.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from pydantic import ValidationError

from mv4all.schema import Prediction

REFERENCE_COLUMN = "mv_description_text"


class PredictionsError(ValueError):
    """A predictions file or its references cannot be used; the message names the lines or ids."""


def _listing(ids: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def read_predictions(path: str | os.PathLike) -> list[Prediction]:
    """Parse a predictions JSONL file; unknown keys are ignored, missing ``id``/``prediction`` are errors."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise PredictionsError(f"predictions file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise PredictionsError(f"{path} is not UTF-8 text (byte {exc.start}): not a predictions file") from None
    except OSError as exc:
        raise PredictionsError(f"cannot read predictions file {path}: {exc.strerror or exc}") from None
    records: list[Prediction] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PredictionsError(f"{path}:{lineno}: not JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise PredictionsError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        absent = [key for key in ("id", "prediction") if key not in obj]
        if absent:
            raise PredictionsError(f"{path}:{lineno}: missing {' and '.join(absent)}")
        known = {k: v for k, v in obj.items() if k in Prediction.model_fields}
        try:
            records.append(Prediction.model_validate(known))
        except ValidationError as exc:
            raise PredictionsError(f"{path}:{lineno}: {exc}") from exc
    if not records:
        raise PredictionsError(f"{path} holds no predictions")
    seen: set[str] = set()
    duplicates = list(dict.fromkeys(r.id for r in records if r.id in seen or seen.add(r.id)))
    if duplicates:
        raise PredictionsError(f"{path}: ids appear more than once: {_listing(duplicates)}")
    return records


def dataset_references(dataset: str | os.PathLike, split: str = "test") -> dict[str, str]:
    """id -> ``mv_description_text`` of one split of a built dataset (default config)."""
    from mv4all.data import load_split

    try:
        ds = load_split(dataset, "mv_description", split)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise PredictionsError(f"cannot load split {split!r} of dataset {dataset}: {exc}") from exc
    absent = [c for c in ("id", REFERENCE_COLUMN) if c not in ds.column_names]
    if absent:
        raise PredictionsError(f"dataset {dataset} ({split}) has no column(s) {absent}")
    ds = ds.select_columns(["id", REFERENCE_COLUMN])
    return dict(zip(ds["id"], ds[REFERENCE_COLUMN]))


def fill_references(
    records: Sequence[Prediction], references: Mapping[str, str] | None, source: str = "the dataset"
) -> list[Prediction]:
    """Give every line a reference: its own if present, else the dataset's by id."""
    lacking = [r.id for r in records if r.reference is None]
    if lacking and references is None:
        raise PredictionsError(
            f"{len(lacking)} line(s) have no reference and no dataset was given (--dataset DIR): {_listing(lacking)}"
        )
    unknown = [i for i in lacking if i not in references] if lacking else []
    if unknown:
        raise PredictionsError(f"{len(unknown)} id(s) are not in {source}: {_listing(unknown)}")
    return [r if r.reference is not None else r.model_copy(update={"reference": references[r.id]}) for r in records]


@dataclass
class PredictionSet:
    """One predictions file, paired with references and ready to score."""

    name: str
    path: Path
    records: list[Prediction] = field(default_factory=list)

    @property
    def predictions(self) -> list[str]:
        return [r.prediction for r in self.records]

    @property
    def references(self) -> list[str]:
        return [r.reference or "" for r in self.records]

    @property
    def runs(self) -> list[str]:
        return sorted({r.run for r in self.records if r.run})


def set_names(paths: Sequence[Path]) -> list[str]:
    """Short, distinct row names: the file stem, or more of the path where stems collide."""
    paths = [Path(p) for p in paths]
    for depth in range(1, max(len(p.parts) for p in paths) + 1):
        names = ["/".join(p.with_suffix("").parts[-depth:]) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def dataset_references_for(
    records: Sequence[Prediction], references: Mapping[str, str], source: str, allow_partial: bool = False
) -> list[Prediction]:
    """Every line scored against the dataset's reference for its id (a line's own reference is not trusted).

    Ids the dataset does not have are refused; covering fewer ids than the split is refused unless
    ``allow_partial`` (a subset's scores are not the split's).
    """
    unknown = [r.id for r in records if r.id not in references]
    if unknown:
        raise PredictionsError(f"{len(unknown)} id(s) are not in {source}: {_listing(unknown)}")
    if len(records) < len(references) and not allow_partial:
        raise PredictionsError(f"the predictions cover {len(records)} of the {len(references)} ids of {source}: "
                               "pass --allow-partial to score that subset")
    return [r.model_copy(update={"reference": references[r.id]}) for r in records]


def load_prediction_sets(
    paths: Sequence[str | os.PathLike], dataset: str | os.PathLike | None = None, split: str = "test",
    allow_partial: bool = False,
) -> dict[str, PredictionSet]:
    """Read every file and pair each line with its reference.

    With ``dataset`` the references come from the dataset's split for every line (and the coverage
    is checked); without it each line must carry its own ``reference``.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise PredictionsError("no predictions file given")
    records = {p: read_predictions(p) for p in paths}
    references = None if dataset is None else dataset_references(dataset, split)
    source = f"split {split!r} of {dataset}"
    out: dict[str, PredictionSet] = {}
    for name, path in zip(set_names(paths), paths):
        try:
            if references is None:
                filled = fill_references(records[path], None)
            else:
                filled = dataset_references_for(records[path], references, source, allow_partial)
        except PredictionsError as exc:
            raise PredictionsError(f"{path}: {exc}") from None
        out[name] = PredictionSet(name=name, path=path, records=filled)
    return out
