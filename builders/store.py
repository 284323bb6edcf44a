"""Work-dir storage of per-clip stage results, and the build's JSON-lines log.

One small JSON file per (stage, key, clip), written atomically (temp file + rename), so a
``kill -9`` loses at most the clips in flight and a rerun picks up everything finished.
The key folds in stage version, backend and a hash of every output-changing option.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from builders.stages import params_hash
from mv4all.safety import check_id, inside


def stage_key(stage: str, version: int, backend: str, params: dict[str, Any]) -> tuple[str, str]:
    """(key, params_hash) of a stage configuration."""
    h = params_hash({"stage": stage, "params": params})
    return f"v{version}-{backend}-{h}", h


def file_fingerprint(path: Path) -> str | None:
    """Cheap change detector for an input file (size + mtime); None when missing."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


class StageStore:
    def __init__(self, work: Path):
        self.root = Path(work) / "stages"

    def _path(self, stage: str, key: str, clip_id: str) -> Path:
        return inside(self.root, stage, key, f"{check_id(clip_id)}.json")

    def attempts_path(self, stage: str, key: str, clip_id: str) -> Path:
        """Where an engine that retries dead workers counts a clip's attempts (``cpu_jobs.run_counted``)."""
        return inside(self.root, ".attempts", stage, key, f"{check_id(clip_id)}.count")

    def get(self, stage: str, key: str, clip_id: str, digest: str | None = None) -> dict | None:
        """The stored record, or None if absent, unreadable, or made from other inputs."""
        path = self._path(stage, key, clip_id)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict):  # valid JSON of another shape: as good as absent
            return None
        if digest is not None and record.get("digest") != digest:
            return None
        return record

    def put(self, stage: str, key: str, clip_id: str, record: dict) -> None:
        path = self._path(stage, key, clip_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{clip_id}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record, f, ensure_ascii=False, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class BuildLog:
    """Append-only JSON lines: what each run computed, reused or failed."""

    def __init__(self, work: Path, run_id: str):
        self.path = Path(work) / "build_log.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id
        self._f = self.path.open("a", encoding="utf-8")

    def write(self, event: str, **fields: Any) -> None:
        line = {"time": round(time.time(), 3), "run": self.run_id, "event": event, **fields}
        self._f.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_log(work: Path) -> list[dict]:
    path = Path(work) / "build_log.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash
    return out
