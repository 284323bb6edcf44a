"""Batch prediction over a dataset split: resumable, shardable across processes, never mixing runs.

A predictions file is JSONL, one ``mv4all.schema.Prediction`` per line, in split order. A rerun
continues it (only ids not yet written are generated); with several processes each writes its own
part file and rank 0 merges them. A file written by another model or other settings is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .inputs import parse_combination
from .schema import Prediction

if TYPE_CHECKING:
    from .describe import Describer

IDENTITY_FIELDS = ("model_sha", "train_inputs", "eval_inputs", "decoding", "seed")


def done_ids(path: str | os.PathLike, describer: Describer | None = None) -> set[str]:
    """Ids already in a predictions file that this run may continue.

    Only our own torn last line (a crash mid-write, no final newline) is cut away. Any other line
    that is not a prediction means the file is not ours, and a line written by another model,
    other inputs or other decoding settings means the file belongs to another run: both are
    refused rather than repaired or mixed.
    """
    from .safety import UnsafeOutput

    path = Path(path)
    if not path.exists():
        return set()
    if not path.is_file():
        raise UnsafeOutput(f"{path} is not a file: give a predictions .jsonl path")
    expected = (None if describer is None
                else describer.prediction({"id": "-"}, "").model_dump(include=set(IDENTITY_FIELDS)))
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    ids: set[str] = set()
    offset = 0
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                record = Prediction.model_validate_json(line)
            except ValueError:
                if number == len(lines):  # torn last line: ours, from an interrupted write
                    with path.open("r+b") as f:
                        f.truncate(offset)
                    break
                raise UnsafeOutput(f"{path}:{number} is not an mv4all prediction line: the file was not written by "
                                   "`mv4all describe`; choose another --out") from None
            if expected is not None:
                mine = record.model_dump(include=set(IDENTITY_FIELDS))
                differ = [k for k in IDENTITY_FIELDS if mine[k] != expected[k]]
                if differ:
                    raise UnsafeOutput(f"{path} holds predictions made with another {', '.join(differ)} "
                                       f"(line {number}): choose another --out, or remove the file to start over")
            ids.add(record.id)
        offset += len(line) + 1
    return ids


def part_path(out: str | os.PathLike, rank: int) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.part{rank}{out.suffix or '.jsonl'}")


def merge_parts(out: str | os.PathLike, num_processes: int, order: Sequence[str] | None = None) -> Path:
    """Rank 0: fold the per-process part files into ``out`` (split order), then remove them."""
    out = Path(out)
    lines: dict[str, str] = {}
    for path in [out] + [part_path(out, r) for r in range(num_processes)]:
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    try:
                        lines.setdefault(json.loads(line)["id"], line)
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue
    keys = [i for i in order if i in lines] + [i for i in lines if i not in set(order)] if order else list(lines)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text("".join(lines[i] + "\n" for i in keys), encoding="utf-8")
    tmp.replace(out)
    for r in range(num_processes):
        part_path(out, r).unlink(missing_ok=True)
    return out


ROW_COLUMNS = ("id", "audio", "genres", "mv_type", "lyrics_understanding", "instruction", "mv_description_text")


def load_split(dataset: str | os.PathLike, split: str = "test", config: str = "mv_description") -> list[dict]:
    """The rows ``describe`` needs from one split (``mv4all.data.load_split`` reads the folder)."""
    from .data import load_split as read_split

    return list(read_split(dataset, config, split, columns=ROW_COLUMNS))


def predict_split(
    describer: Describer,
    dataset: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str = "test",
    audio_root: str | os.PathLike | None = None,
    process_index: int = 0,
    num_processes: int = 1,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write predictions for one split, ``describer.decoding.batch_size`` rows per ``generate``.

    Resumable: ids already in ``out`` (or in this process's part file) are skipped. With
    several processes each writes ``out.part{rank}.jsonl`` over its shard; the caller merges on
    rank 0 with ``merge_parts`` after a barrier. Returns the file this process wrote.
    """
    rows = load_split(dataset, split)
    if limit is not None:
        rows = rows[:limit]
    target = Path(out) if num_processes == 1 else part_path(out, process_index)
    target.parent.mkdir(parents=True, exist_ok=True)
    skip = done_ids(out, describer) | (done_ids(target, describer) if target != Path(out) else set())
    mine = [r for j, r in enumerate(rows) if j % num_processes == process_index and r["id"] not in skip]
    hears = parse_combination(describer.inputs).uses_audio
    if hears and audio_root is None:
        raise ValueError(f"inputs {describer.inputs} include music: give audio_root (the Music4All folder)")
    size = describer.decoding.batch_size
    done = 0
    with target.open("a", encoding="utf-8") as f:
        for i in range(0, len(mine), size):
            chunk = [dict(r) for r in mine[i : i + size]]
            if hears:
                for r in chunk:
                    r["input_features"] = describer.processor.row_features(r, audio_root)
            for r, (text, truncated) in zip(chunk, describer.generate_with_stops(chunk)):
                f.write(describer.prediction(r, text, truncated).model_dump_json() + "\n")
            f.flush()
            done += len(chunk)
            if progress is not None:
                progress(done, len(mine))
    return target
