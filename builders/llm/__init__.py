"""LLM backends for the builder's text/vision stages, chosen by name.

``get_backend("offline")`` gives the deterministic, network-free backend. Backends are
imported lazily, so asking for "offline" never imports the OpenAI client. To add one,
put ``"name": "module:Class"`` in ``_BACKENDS`` (the class is called with ``**options``). A backend
made here remembers its name and options (``made_with``) so that an engine can make the same one in
its workers; keys are read from the environment there too, never passed along.
"""

from __future__ import annotations

import importlib
from typing import Any

from builders.stages import Backend

_BACKENDS: dict[str, str] = {
    "offline": "builders.llm.offline:OfflineBackend",
    "openai": "builders.llm.openai_backend:OpenAIBackend",
    "openai-batch": "builders.llm.openai_backend:OpenAIBatchBackend",
}


def available_backends() -> list[str]:
    """Names ``get_backend`` accepts."""
    return sorted(_BACKENDS)


def get_backend(name: str, **options: Any) -> Backend:
    """Build the backend called ``name`` with ``options``; unknown names raise ``ValueError``."""
    key = (name or "").strip().lower()
    if key not in _BACKENDS:
        raise ValueError(f"unknown LLM backend {name!r}; choose one of: {', '.join(available_backends())}")
    module_name, _, attr = _BACKENDS[key].partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    backend = factory(**options)
    # How to make the same backend in another process (an engine's workers); options hold no secrets.
    backend.made_with = (key, dict(options))
    return backend


__all__ = ["available_backends", "get_backend"]
