"""What a build hands back and how it fails: ``BuildResult`` (rows per config and split, failures,
LLM usage, stage timings and how much work was reused), ``BuildError`` (no dataset could be made)
and the one-line reason recorded for a clip whose stage raised."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from builders.stages import Usage
from mv4all.schema import FailureRecord


class BuildError(RuntimeError):
    """The build ran but cannot produce a dataset (the message says why and where to look)."""


@dataclass
class BuildResult:
    out: Path
    work: Path
    build_id: str
    rows: dict[str, dict[str, list[dict]]]  # config -> split -> rows (json)
    failures: list[FailureRecord]
    usage: dict[str, Usage]
    stage_seconds: dict[str, float]
    computed: Counter = field(default_factory=Counter)  # stage -> clips computed this run
    reused: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    published: str | None = None  # the URL the dataset was uploaded to (``--out`` given as a URL)
    work_url: str | None = None  # the work dir's URL (``--work-dir`` given as a URL); ``work`` is then scratch

    def count(self, config: str, split: str | None = None) -> int:
        splits = self.rows.get(config, {})
        return sum(len(v) for k, v in splits.items() if split in (None, k))


def failure_reason(exc: BaseException) -> str:
    """The published reason: a decode error's own message (it names the file), else ``Type: message``."""
    text = str(exc).strip() or repr(exc)
    name = type(exc).__name__
    return text if name in ("VideoDecodeError", "AudioDecodeError") else f"{name}: {text}"
