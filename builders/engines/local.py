"""The local engine: CPU jobs in this process (one worker) or in spawned worker processes.

A worker process that dies (a crash in a native decoder, the OOM killer) breaks Python's whole
process pool. The clips that were not finished are then run again in a fresh pool; the ones that
had started (their attempt file exists, ``cpu_jobs.run_counted``) go first, one at a time, so a clip
that keeps killing its worker ends as a recorded failure after ``MAX_ATTEMPTS`` and never takes the
clips beside it down with it.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Iterator

from builders.locations import exists
from builders.stages import Backend


class LocalEngine:
    name = "local"

    def map_cpu(self, jobs: list[dict], workers: int) -> Iterator[dict]:
        from builders.pipeline.cpu_jobs import run_job, worker_init

        if not jobs:
            return
        load_features = any(j["stage"] == "features" for j in jobs)
        if workers <= 1:
            worker_init(load_features=load_features)
            for job in jobs:
                yield run_job(job)
            return
        # librosa compiles numba kernels into an on-disk cache at import; let this process
        # write it once so that fresh workers only read it (concurrent writers corrupt it).
        import librosa  # noqa: F401

        remaining = dict(enumerate(jobs))
        suspects: list[int] = []
        fruitless = 0  # pools in a row that broke before finishing or starting anything
        while remaining:
            order = suspects or list(remaining)
            finished, broken = 0, False
            for index, result in self._pool_run(remaining, order, 1 if suspects else workers, load_features):
                if result is None:
                    broken = True
                    continue
                del remaining[index]
                finished += 1
                yield result
            suspects = [i for i in remaining if exists(remaining[i]["attempts_file"])] if broken else []
            fruitless = 0 if finished or suspects else fruitless + 1
            if fruitless >= 2:
                raise RuntimeError("the worker processes die before they can start a clip (see the log above)")

    @staticmethod
    def _pool_run(remaining: dict[int, dict], order: list[int], size: int, load_features: bool):
        """(index, result) per job as it finishes; (index, None) for each job lost to a broken pool."""
        from builders.pipeline.cpu_jobs import run_counted, worker_init

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=size, mp_context=ctx, initializer=worker_init,
                                 initargs=(load_features,)) as pool:
            futures = {pool.submit(run_counted, remaining[i]): i for i in order}
            for fut in as_completed(futures):
                try:
                    yield futures[fut], fut.result()
                except BrokenProcessPool:
                    yield futures[fut], None

    def llm_backend(self, backend: Backend) -> Backend:
        return backend  # the backend's own threads (or the Batch API) do the work

    def close(self) -> None:
        pass
