"""Where a build's per-clip work runs: ``local`` (processes on this machine) or ``ray`` (a Ray cluster).

Both engines run the same stage functions: ``builders.pipeline.cpu_jobs`` for frames and features,
the LLM backend's own ``run`` for the LLM stages. The pipeline, not the engine, checks and stores
every result in the work dir, so an engine changes where work happens, never what is built: the
same inputs give the same parquet files and build id on either, and a build started on one can
be finished on the other.
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol

from builders.stages import Backend

ENGINES = ("local", "ray")


class EngineError(RuntimeError):
    """The engine cannot start: Ray is not installed, or the cluster cannot be reached."""


class Engine(Protocol):
    name: str

    def map_cpu(self, jobs: list[dict], workers: int) -> Iterator[dict]:
        """Run CPU jobs (``cpu_jobs.run_job``), yielding each result as it finishes."""

    def llm_backend(self, backend: Backend) -> Backend:
        """The backend the LLM stages should call (the same one, or one that spreads ``run`` out)."""

    def close(self) -> None: ...


def get_engine(name: str, address: str | None = None, **options: Any) -> Engine:
    """The engine called ``name``; ``address`` is Ray's (``auto``, ``ray://HOST:PORT``; none starts a local one)."""
    if name == "local":
        if address:
            raise EngineError("--ray-address needs --engine ray")
        from builders.engines.local import LocalEngine

        return LocalEngine()
    if name == "ray":
        from builders.engines.ray_engine import RayEngine

        return RayEngine(address=address, **options)
    raise EngineError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Engine", "EngineError", "get_engine"]
