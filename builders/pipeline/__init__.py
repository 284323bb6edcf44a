"""The build pipeline: ingest -> frames -> static filter -> features -> LLM stages -> split -> export.

Modules, one job each: ``runner`` (``Pipeline``: runs the stages in order, claims ``--out``, keeps
the ledger of failures, reuse, timings and LLM usage; ``build``), ``cpu`` (frames, static filter
and features, in worker processes), ``llm`` (the LLM stages, batched, checked, resumable),
``export`` (rows, build id, split, the dataset folder and its build info) and ``result``
(``BuildResult``, ``BuildError``).
"""

from builders.pipeline.cpu import VIDEO_EXTENSIONS, find_video
from builders.pipeline.result import BuildError, BuildResult
from builders.pipeline.runner import Pipeline, build

__all__ = ["VIDEO_EXTENSIONS", "BuildError", "BuildResult", "Pipeline", "build", "find_video"]
