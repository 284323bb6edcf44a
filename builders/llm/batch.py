"""Batch API plumbing: JSONL files within both limits, a ledger of submitted batches, polling.

Every batch is written to the ledger (one JSON file per batch in the work dir) the moment
the API returns its id, indexed by the request keys it carries. A rerun after a crash or a
Ctrl-C looks each request key up there first and waits on (or re-downloads) the batch that
already holds it, so a request is paid for once no matter how often the build is restarted.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from builders.locations import is_url, join, names_in, read_bytes, read_many, write_bytes

MAX_REQUESTS = 50_000
MAX_BYTES = 200_000_000  # "200 MB"; decimal, the stricter reading
ENDPOINT = "/v1/chat/completions"
DONE = {"completed"}
DEAD = {"failed", "expired", "cancelled"}
TERMINAL = DONE | DEAD


class RequestTooLarge(ValueError):
    """One request alone exceeds the file-size limit; it cannot go through the Batch API."""


def jsonl_line(custom_id: str, body: dict[str, Any]) -> bytes:
    line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


@dataclass
class BatchFile:
    path: Path
    keys: list[str] = field(default_factory=list)
    bytes: int = 0


class JsonlSplitter:
    """Writes request lines into as many files as both limits need, never splitting a line."""

    def __init__(self, folder: Path, prefix: str, max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES):
        self.folder, self.prefix = Path(folder), prefix
        self.max_requests, self.max_bytes = max_requests, max_bytes
        self.files: list[BatchFile] = []
        self._fh: io.BufferedWriter | None = None

    def add(self, custom_id: str, body: dict[str, Any]) -> None:
        line = jsonl_line(custom_id, body)
        if len(line) > self.max_bytes:
            raise RequestTooLarge(f"request is {len(line):,} bytes; a batch file may hold {self.max_bytes:,}")
        cur = self.files[-1] if self.files and self._fh else None
        if cur is None or len(cur.keys) >= self.max_requests or cur.bytes + len(line) > self.max_bytes:
            self._open()
            cur = self.files[-1]
        assert self._fh is not None
        self._fh.write(line)
        cur.keys.append(custom_id)
        cur.bytes += len(line)

    def _open(self) -> None:
        self._close_current()
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.folder, prefix=f"{self.prefix}-{len(self.files):04d}-", suffix=".jsonl")
        self._fh = os.fdopen(fd, "wb")
        self.files.append(BatchFile(path=Path(name)))

    def _close_current(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def close(self) -> list[BatchFile]:
        self._close_current()
        return [f for f in self.files if f.keys]


class BatchLedger:
    """Submitted batches of this work dir, and which batch holds which request key. The ledger is
    a folder or a URL (``builders.locations``): a work dir on an object store keeps it there, so a
    build resumed on another machine waits for the batches already paid for instead of paying again."""

    def __init__(self, root: str | Path):
        self.root = str(root)
        self.records: dict[str, dict[str, Any]] = {}
        self.index: dict[str, str] = {}
        names = [n for n in names_in(self.root) if n.startswith("batch_") and n.endswith(".json")]
        wanted = [join(self.root, n) for n in names]
        if is_url(self.root):
            found = read_many(wanted)
        else:
            found = {loc: data for loc in wanted if (data := read_bytes(loc)) is not None}
        loaded = []
        for loc in wanted:
            try:
                loaded.append(json.loads(found[loc].decode("utf-8")))
            except (KeyError, ValueError):
                continue
        for rec in sorted(loaded, key=lambda r: r.get("created", 0)):  # the latest batch holding a key wins
            self._remember(rec)

    def _remember(self, rec: dict[str, Any]) -> None:
        self.records[rec["batch_id"]] = rec
        if rec.get("status") in DEAD:
            return
        for key in rec.get("keys", []):
            self.index[key] = rec["batch_id"]

    def holder(self, key: str, host: str) -> str | None:
        batch_id = self.index.get(key)
        if batch_id is None:
            return None
        rec = self.records[batch_id]
        return batch_id if rec.get("host") == host and rec.get("status") not in DEAD else None

    def save(self, rec: dict[str, Any]) -> None:
        write_bytes(join(self.root, f"batch_{_safe(rec['batch_id'])}.json"), json.dumps(rec).encode("utf-8"))
        if rec.get("status") in DEAD:
            for key in rec.get("keys", []):
                if self.index.get(key) == rec["batch_id"]:
                    del self.index[key]
            self.records[rec["batch_id"]] = rec
        else:
            self._remember(rec)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


@dataclass
class Outcome:
    """One request's fate inside a batch."""

    status_code: int
    body: dict[str, Any] | None = None
    error: str | None = None


class BatchRunner:
    def __init__(self, client: Any, call: Callable[..., Any], ledger: BatchLedger, host: str,
                 poll_interval: float = 30.0, max_wait: float = 26 * 3600.0, log: Callable[..., None] | None = None):
        self.client, self.call, self.ledger, self.host = client, call, ledger, host
        self.poll_interval, self.max_wait = poll_interval, max_wait
        self.log = log or (lambda *a, **k: None)
        self._downloaded: dict[str, dict[str, Outcome]] = {}

    def submit(self, bf: BatchFile, stage: str) -> str:
        with bf.path.open("rb") as fh:
            uploaded = self.call("files.create", self.client.files.create, file=(bf.path.name, fh), purpose="batch")
        batch = self.call("batches.create", self.client.batches.create, input_file_id=uploaded.id, endpoint=ENDPOINT,
                          completion_window="24h", metadata={"mv4all_stage": stage})
        rec = {"batch_id": batch.id, "input_file_id": uploaded.id, "stage": stage, "host": self.host,
               "status": batch.status, "keys": bf.keys, "requests": len(bf.keys), "bytes": bf.bytes,
               "created": time.time()}
        self.ledger.save(rec)
        self.log("batch_submitted", stage=stage, batch=batch.id, requests=len(bf.keys), bytes=bf.bytes)
        return batch.id

    def collect(self, batch_ids: list[str]) -> dict[str, Outcome]:
        """Wait until every batch is terminal; the outcome of every request key they answered."""
        outcomes: dict[str, Outcome] = {}
        waiting = list(dict.fromkeys(batch_ids))
        started = time.monotonic()
        while waiting:
            still = []
            for batch_id in waiting:
                rec = self.ledger.records[batch_id]
                if batch_id in self._downloaded:
                    outcomes.update(self._downloaded[batch_id])
                    continue
                batch = self.call("batches.retrieve", self.client.batches.retrieve, batch_id)
                if batch.status != rec.get("status"):
                    rec = {**rec, "status": batch.status, "output_file_id": batch.output_file_id,
                           "error_file_id": batch.error_file_id}
                    self.ledger.save(rec)
                    self.log("batch_status", stage=rec["stage"], batch=batch_id, status=batch.status)
                if batch.status in TERMINAL:
                    got = self._download(batch)
                    self._downloaded[batch_id] = got
                    outcomes.update(got)
                else:
                    still.append(batch_id)
            waiting = still
            if waiting:
                if time.monotonic() - started > self.max_wait:
                    raise TimeoutError(f"batches still running after {self.max_wait:.0f} s: {', '.join(waiting)}; "
                                       "rerun the build to collect them")
                time.sleep(self.poll_interval)
        return outcomes

    def _download(self, batch: Any) -> dict[str, Outcome]:
        got: dict[str, Outcome] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            text = self.call("files.content", self.client.files.content, file_id).text
            for line in text.splitlines():
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                got[item.get("custom_id", "")] = _outcome(item)
        return got


def _outcome(item: dict[str, Any]) -> Outcome:
    response = item.get("response") or {}
    error = item.get("error")
    status = int(response.get("status_code") or (0 if error else 200))
    body = response.get("body")
    if status == 200 and isinstance(body, dict):
        return Outcome(status_code=200, body=body)
    if error:
        message = f"{error.get('code', 'error')}: {error.get('message', '')}".strip()
    elif isinstance(body, dict) and body.get("error"):
        message = str((body["error"] or {}).get("message") or body["error"])
    else:
        message = f"HTTP {status}"
    return Outcome(status_code=status or 500, error=message[:500])
