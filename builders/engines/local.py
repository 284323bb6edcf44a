"""The local engine: CPU jobs in this process (one worker) or in spawned worker processes."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Iterator

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

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=worker_init,
                                 initargs=(load_features,)) as pool:
            futures = [pool.submit(run_job, job) for job in jobs]
            for fut in as_completed(futures):
                yield fut.result()

    def llm_backend(self, backend: Backend) -> Backend:
        return backend  # the backend's own threads (or the Batch API) do the work

    def close(self) -> None:
        pass
