"""The Ray engine: the build's per-clip work on Ray Data, on one machine or a cluster.

- CPU stages: the clips' jobs become a dataset mapped by a pool of actors, one CPU each, that load
  madmom's processors once (``cpu_jobs.worker_init``) and run ``cpu_jobs.run_counted``. Ray Data
  restarts a dead actor and retries its clip; the attempt count kept in the work dir turns a clip
  that keeps killing workers into a recorded failure instead of an endless retry.
- LLM stages: each ``Backend.run`` call is spread over long-lived actors that make the same backend
  from its name and options (``made_with``) and read their API key from their own environment. One
  rate-limit actor holds the build's requests and tokens per minute for every process in the
  cluster. The content-addressed answer cache is shared through its folder, so it must be on a
  filesystem every node sees; the Batch API path stays in the driver (one submission, no workers).

Results come back to the driver, which checks and stores them like the local engine does: the work
dir and the dataset are the same whichever engine ran.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from builders.stages import Backend, Stage, StageInput, StageResult


def _quiet_ray_data() -> None:
    """Our progress bars and log are the build's; Ray Data's own would interleave with them."""
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # before the switch below, which warns
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False


class RayEngine:
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        from builders.engines import EngineError

        try:
            import ray
            import ray.data  # noqa: F401 - the "data" extra
        except ImportError as exc:
            raise EngineError(f'--engine ray needs Ray Data ({exc}): pip install "mv4all[ray]"') from exc
        self.started_here = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            try:
                if address:
                    ray.init(address=address, **kwargs)
                else:
                    ray.init(num_cpus=num_cpus, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise EngineError(f"cannot start or join Ray (address {address or 'local'}): {exc}") from exc
            self.started_here = True
        _quiet_ray_data()
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._limiters: dict[tuple, Any] = {}
        self._owned: list[Any] = []  # actors that live as long as the build (killed by close)

    def actors(self, workers: int, items: int) -> int:
        """``--workers`` caps the pool; 1 (the default) means one actor per CPU of the cluster."""
        wanted = workers if workers > 1 else self.cpus
        return max(1, min(wanted, items))

    def map_cpu(self, jobs: list[dict], workers: int) -> Iterator[dict]:
        import ray.data

        if not jobs:
            return
        load_features = any(j["stage"] == "features" for j in jobs)
        ds = ray.data.from_items([{"job": json.dumps(j)} for j in jobs], override_num_blocks=len(jobs))
        # two clips in flight per actor: the next one is at hand when the current one finishes
        pool = ray.data.ActorPoolStrategy(size=self.actors(workers, len(jobs)), max_tasks_in_flight_per_actor=2)
        ds = ds.map_batches(_CpuWorker, fn_constructor_kwargs={"load_features": load_features}, batch_size=1,
                            compute=pool, num_cpus=1)
        for row in ds.iter_rows():
            yield json.loads(row["result"])

    def llm_backend(self, backend: Backend) -> Backend:
        """Spread the backend's realtime requests over the cluster when it can be made again in a worker."""
        if getattr(backend, "made_with", None) is None or getattr(backend, "batch", False):
            return backend
        return RayBackend(self, backend)

    def limiter(self, rpm: int | None, tpm: int | None, window: float) -> Any:
        """The cluster-wide rate limit (an actor), or None when there is no limit."""
        if not rpm and not tpm:
            return None
        import ray

        key = (rpm, tpm, window)
        if key not in self._limiters:
            self._limiters[key] = ray.remote(num_cpus=0)(_LimiterActor).remote(rpm, tpm, window)
        return self._limiters[key]

    def own(self, actors: list[Any]) -> None:
        self._owned.extend(actors)

    def close(self) -> None:
        import ray

        for handle in [*self._owned, *self._limiters.values()]:
            ray.kill(handle)
        self._owned.clear()
        self._limiters.clear()
        if self.started_here:
            ray.shutdown()


# --------------------------------------------------------------------------- CPU stages


class _CpuWorker:
    """One actor of the CPU pool: madmom loaded once, then one clip per call."""

    def __init__(self, load_features: bool):
        from builders.pipeline.cpu_jobs import worker_init

        worker_init(load_features=load_features)

    def __call__(self, batch: dict) -> dict:
        from builders.pipeline.cpu_jobs import run_counted

        return {"result": [json.dumps(run_counted(json.loads(text))) for text in batch["job"]]}


# --------------------------------------------------------------------------- LLM stages


class _LimiterActor:
    """Holds the build's one :class:`RateLimiter`; every client in the cluster reserves through it."""

    def __init__(self, rpm: int | None, tpm: int | None, window: float):
        from builders.llm.client import RateLimiter

        self.limiter = RateLimiter(rpm, tpm, window=window)

    def reserve(self, tokens: int) -> float:
        return self.limiter.reserve(tokens)


class SharedLimiter:
    """A client's view of the cluster-wide limiter (``ChatClient(limiter=...)``)."""

    def __init__(self, handle: Any):
        self.handle = handle

    def acquire(self, tokens: int) -> None:
        import ray

        while (wait := ray.get(self.handle.reserve.remote(tokens))) > 0:
            time.sleep(min(wait, 5.0))


class RayBackend:
    """The driver's backend, except that ``run`` sends shares of the clips to long-lived actors that make
    the same backend (same name and options) and return their answers, counters and log events.

    The actors are started at the first ``run`` and serve every LLM stage of the build (a fresh pool per
    stage and chunk would pay the actors' start-up hundreds of times on a paper-size build). Ray restarts
    an actor that dies and retries its share; answers it had already received are in the shared cache,
    so they are not paid for twice.
    """

    MAX_ACTORS = 32  # API work waits on the network and the rate limit, not on cores

    def __init__(self, engine: RayEngine, local: Backend):
        self._engine, self._local = engine, local
        self._log = None
        self._work: str | None = None
        self._actors: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._local, name)

    def attach(self, work: str | Path, log) -> None:
        attach = getattr(self._local, "attach", None)
        if callable(attach):
            attach(work=work, log=log)
        self._work, self._log = str(work), log

    def _key_env(self) -> str | None:
        """The API key's variable when this process has it: workers must have it too (never sent to them)."""
        name = getattr(self._local, "api_key_env", None)
        return name if name and os.environ.get(name) else None

    def _pool(self) -> list[Any]:
        import ray

        if not self._actors:
            local = self._local
            limiter = self._engine.limiter(getattr(local, "rpm", None), getattr(local, "tpm", None),
                                           float(getattr(local, "rate_window", 60.0)))
            actor = ray.remote(num_cpus=1, max_restarts=2, max_task_retries=2)(_LLMWorker)
            self._actors = [actor.remote(local.made_with, limiter, str(self._work) if self._work else None,
                                         self._key_env())
                            for _ in range(min(self._engine.cpus, self.MAX_ACTORS))]
            self._engine.own(self._actors)
            try:
                ray.get([a.ready.remote() for a in self._actors])
            except ray.exceptions.RayError as exc:  # e.g. no API key on the workers: say why, not where
                from builders.engines import EngineError

                lines = [line for line in str(exc).splitlines() if line.strip()]
                self._actors = []
                raise EngineError(f"the LLM workers could not start: {lines[-1] if lines else exc}") from exc
        return self._actors

    def run(self, stage: Stage, inputs: list[StageInput]) -> list[StageResult]:
        import ray

        if not inputs:
            return []
        actors = self._pool()[: len(inputs)]
        share = math.ceil(len(inputs) / len(actors))
        pending = [actor.run.remote(stage.name, [inp.model_dump_json() for inp in inputs[i * share:(i + 1) * share]])
                   for i, actor in enumerate(actors) if inputs[i * share:(i + 1) * share]]
        results: list[StageResult] = []
        stats = getattr(self._local, "stats", None)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            payload = json.loads(ray.get(done[0]))
            results.extend(StageResult.model_validate(r) for r in payload["results"])
            if isinstance(stats, Counter):
                stats.update(payload["stats"])
            for event in payload["log"]:
                if self._log is not None:
                    self._log(event.pop("event"), **event)
        return results


class _LLMWorker:
    """One LLM actor: the build's backend, made again here; answers a share of one stage's clips per call."""

    def __init__(self, made_with: tuple[str, dict], limiter: Any, work: str | None, key_env: str | None):
        from builders.llm import get_backend

        if key_env and not os.environ.get(key_env):
            raise RuntimeError(f"{key_env} is set where the build runs but not on the Ray worker: set it in the "
                               "nodes' environment or in the job's runtime_env (it is never sent by the build)")
        name, options = made_with
        self.backend = get_backend(name, **options)
        self.events: list[dict] = []
        attach = getattr(self.backend, "attach", None)
        if callable(attach) and work:
            attach(work=work, log=lambda event, **fields: self.events.append({"event": event, **fields}))
        if limiter is not None and hasattr(self.backend, "shared_limiter"):
            self.backend.shared_limiter = SharedLimiter(limiter)

    def ready(self) -> bool:
        return True

    def run(self, stage_name: str, inputs_json: list[str]) -> str:
        from builders.stages import LLM_STAGES

        stage = next(s for s in LLM_STAGES if s.name == stage_name)
        inputs = [StageInput.model_validate_json(text) for text in inputs_json]
        stats = getattr(self.backend, "stats", None)
        before = Counter(stats) if isinstance(stats, Counter) else Counter()
        results = self.backend.run(stage, inputs)
        after = Counter(stats) if isinstance(stats, Counter) else Counter()
        events, self.events = self.events, []
        return json.dumps({"results": [r.model_dump(mode="json") for r in results],
                           "stats": dict(after - before), "log": events}, default=str)
