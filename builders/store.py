"""Work-dir storage of per-clip stage results, and the build's JSON-lines log.

One small JSON file per (stage, key, clip), written whole (temp file + rename in a folder, one
upload on an object store), so a ``kill -9`` loses at most the clips in flight and a rerun picks
up everything finished.
The key folds in stage version, backend and a hash of every output-changing option.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from builders.locations import WorkDirUnreachable, is_url, join, names_in, read_bytes, read_many, write_bytes
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
    """Stage records under ``WORK/stages``, where WORK is a folder or an fsspec URL
    (``builders.locations``). A URL costs a round trip per request, so there the records of one
    (stage, key) are listed and fetched together the first time one of them is asked for, and
    records are uploaded by a few threads while the build goes on (:meth:`flush` waits for them;
    a record still in flight when the build is killed is only computed again). Only the build's
    driver writes records, so the fetched copy stays current."""

    UPLOAD_THREADS = 16

    def __init__(self, work: str | Path):
        self.work = str(work)
        self.url = is_url(self.work)
        self.root = self.work.rstrip("/") + "/stages" if self.url else Path(work) / "stages"
        self._loaded: dict[tuple[str, str], dict[str, bytes]] = {}
        self._uploads: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def _path(self, stage: str, key: str, clip_id: str) -> str:
        if self.url:
            return join(self.root, stage, key, f"{check_id(clip_id)}.json")
        return str(inside(self.root, stage, key, f"{check_id(clip_id)}.json"))

    def attempts_path(self, stage: str, key: str, clip_id: str) -> str:
        """Where an engine that retries dead workers counts a clip's attempts (``cpu_jobs.run_counted``)."""
        if self.url:
            return join(self.root, ".attempts", stage, key, f"{check_id(clip_id)}.count")
        return str(inside(self.root, ".attempts", stage, key, f"{check_id(clip_id)}.count"))

    def _raw(self, stage: str, key: str, clip_id: str) -> bytes | None:
        if not self.url:
            try:
                return read_bytes(self._path(stage, key, clip_id))
            except OSError:  # unreadable: as good as absent, it is computed again
                return None
        if (stage, key) not in self._loaded:
            folder = join(self.root, stage, key)
            wanted = [join(folder, name) for name in names_in(folder) if name.endswith(".json")]
            self._loaded[(stage, key)] = read_many(wanted)
        return self._loaded[(stage, key)].get(self._path(stage, key, clip_id))

    def get(self, stage: str, key: str, clip_id: str, digest: str | None = None) -> dict | None:
        """The stored record, or None if absent, unreadable, or made from other inputs."""
        raw = self._raw(stage, key, clip_id)
        try:
            record = json.loads(raw.decode("utf-8")) if raw is not None else None
        except ValueError:
            return None
        if not isinstance(record, dict):  # valid JSON of another shape: as good as absent
            return None
        if digest is not None and record.get("digest") != digest:
            return None
        return record

    def put(self, stage: str, key: str, clip_id: str, record: dict) -> None:
        data = json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8")
        path = self._path(stage, key, clip_id)
        if not self.url:
            write_bytes(path, data)
            return
        if self._uploads is None:
            self._uploads = ThreadPoolExecutor(max_workers=self.UPLOAD_THREADS, thread_name_prefix="store")
        self._pending = [f for f in self._pending if not f.done() or f.exception() is not None]
        self._pending.append(self._uploads.submit(write_bytes, path, data))
        if (stage, key) in self._loaded:
            self._loaded[(stage, key)][path] = data

    def flush(self) -> None:
        """Wait for the records still being uploaded; the first upload that failed is raised."""
        pending, self._pending = self._pending, []
        for fut in pending:
            try:
                fut.result()
            except Exception as exc:
                raise WorkDirUnreachable(f"cannot store stage records in {self.work}: "
                                         f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._uploads is not None:
                self._uploads.shutdown(wait=True)
                self._uploads = None


class BuildLog:
    """Append-only JSON lines: what each run computed, reused or failed. Object stores cannot
    append, so with a URL work dir the log is kept in the local scratch folder and this run's lines
    are uploaded to ``mirror/RUN_ID.jsonl`` when it closes."""

    def __init__(self, work: Path, run_id: str, mirror: str | None = None):
        self.path = Path(work) / "build_log.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id
        self.mirror = mirror
        self._f = self.path.open("a", encoding="utf-8")
        self._start = self._f.tell()

    def write(self, event: str, **fields: Any) -> None:
        line = {"time": round(time.time(), 3), "run": self.run_id, "event": event, **fields}
        self._f.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()
        if self.mirror:
            with self.path.open("rb") as f:
                f.seek(self._start)
                lines = f.read()
            try:
                write_bytes(join(self.mirror, f"{self.run_id}.jsonl"), lines)
            except Exception as exc:
                raise WorkDirUnreachable(f"cannot upload the build log to {self.mirror} (it is in {self.path}): "
                                         f"{type(exc).__name__}: {exc}") from exc


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
