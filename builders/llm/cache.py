"""One content-addressed store of accepted LLM answers, shared by every build on the machine (or on
a cluster, in a shared folder or at an fsspec URL).

The key is a hash of the whole request as sent (model, messages with their images, schema,
sampling parameters) plus the server's host, so any build, work dir or backend (online or
Batch API) that asks the same question gets the stored answer and pays nothing. Only answers
that passed validation are stored; nothing about the caller (keys, headers) is.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from builders.locations import is_url, join, read_bytes, write_bytes

KEY_VERSION = 1
DEFAULT_DIR = Path("~/.cache/mv4all/llm")
OPENAI_HOST = "api.openai.com"


def host_of(base_url: str | None) -> str:
    """``host[:port]`` of a base URL: credentials and paths never enter the key."""
    if not base_url:
        return OPENAI_HOST
    parts = urlsplit(base_url if "//" in base_url else "//" + base_url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


def request_key(body: dict[str, Any], host: str) -> str:
    blob = json.dumps({"v": KEY_VERSION, "host": host, "body": body}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """Answers as one small JSON file per key under ``root``: a folder, or an fsspec URL (a cluster's
    LLM workers on several nodes then share one cache without a shared disk)."""

    def __init__(self, root: Path | str | None = None, enabled: bool = True) -> None:
        text = str(root or DEFAULT_DIR)
        self.root: Path | str = text.rstrip("/") if is_url(text) else Path(os.path.expanduser(text))
        self.enabled = enabled

    def _path(self, key: str) -> str:
        return join(str(self.root), key[:2], f"{key}.json")

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        try:
            raw = read_bytes(self._path(key))
            return json.loads(raw.decode("utf-8")) if raw is not None else None
        except (OSError, ValueError):
            return None

    def put(self, key: str, content: str, model: str | None, usage: dict[str, int], structured: str) -> None:
        if not self.enabled:
            return
        record = {"content": content, "model": model, "usage": usage, "structured": structured}
        write_bytes(self._path(key), json.dumps(record, ensure_ascii=False).encode("utf-8"))
