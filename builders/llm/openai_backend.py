"""The ``openai`` (online) and ``openai-batch`` (Batch API) backends.

Both send the very same request bodies (``builders.llm.requests``), look every request up in
the shared content-addressed cache first, and accept an answer only when it validates against
the Contract v1 model and the stage's rules; a rejected answer is re-asked with the reason, a
bounded number of times, then reported as the clip's failure. The API key is read from the
environment when the first request is made and is never part of params, cache, logs or notes.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

from pydantic import BaseModel

from builders import prompts
from builders.llm.batch import MAX_BYTES, MAX_REQUESTS, BatchLedger, BatchRunner, JsonlSplitter, RequestTooLarge
from builders.llm.cache import ResponseCache, host_of, request_key
from builders.llm.client import RETRYABLE_STATUS, ChatClient
from builders.llm.cost import load_prices
from builders.llm.requests import (
    DEFAULT_MAX_TOKENS,
    ChatRequest,
    InvalidAnswer,
    RequestOptions,
    build_requests,
    merge_parts,
    parse_answer,
    with_reask,
)
from builders.locations import is_url, join
from builders.stages import Stage, StageInput, StageResult, Usage

MAX_RESUBMITS = 2  # Batch API: requests lost to an expired/failed batch or a transient error


class OpenAIBackend:
    id = "openai"
    batch = False

    def __init__(
        self,
        *,
        model: str | None = None,
        vision_model: str = "gpt-4o-mini",
        text_model: str = "gpt-4o-mini",
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        cache_dir: str | Path | None = None,
        cache: bool = True,
        detail: str = "low",
        frames_mode: str = "clip",
        contact_cell_width: int = 256,
        contact_detail: str = "low",
        temperature: float = 0.0,
        seed: int = 1234,
        max_tokens: dict[str, int] | None = None,
        token_param: str | None = None,
        prompt_version: int = prompts.DEFAULT_VERSION,
        concurrency: int = 4,
        rpm: int | None = None,
        tpm: int | None = None,
        rate_window: float = 60.0,
        timeout: float = 120.0,
        max_retries: int = 6,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_reasks: int = 2,
        chunk: int | None = None,
        poll_interval: float = 30.0,
        max_wait: float = 26 * 3600.0,
        max_file_requests: int = MAX_REQUESTS,
        max_file_bytes: int = MAX_BYTES,
        keep_files: bool = False,
        state_dir: str | Path | None = None,
    ) -> None:
        if frames_mode not in ("clip", "frame", "contact"):
            raise ValueError(f"frames_mode must be clip, frame or contact, not {frames_mode!r}")
        for name, value in (("detail", detail), ("contact_detail", contact_detail)):
            if value not in ("low", "high", "auto"):
                raise ValueError(f"{name} must be low, high or auto, not {value!r}")
        self.base_url = base_url or None
        self.host = host_of(self.base_url)
        self.opts = RequestOptions(
            vision_model=model or vision_model, text_model=model or text_model, detail=detail,
            frames_mode=frames_mode, contact_cell_width=int(contact_cell_width), contact_detail=contact_detail,
            temperature=float(temperature), seed=int(seed), max_tokens={**DEFAULT_MAX_TOKENS, **(max_tokens or {})},
            token_param=token_param or ("max_tokens" if self.base_url else "max_completion_tokens"),
            prompt_version=int(prompt_version),
        )
        self.api_key_env = api_key_env
        self.cache = ResponseCache(cache_dir, enabled=cache)
        self.concurrency = max(1, int(concurrency))
        self.rpm, self.tpm, self.rate_window = rpm, tpm, float(rate_window)
        self.shared_limiter = None  # set by an engine that spreads requests over processes (one global limit)
        self.timeout, self.max_retries, self.backoff, self.max_backoff = timeout, max_retries, backoff, max_backoff
        self.max_reasks = max(0, int(max_reasks))
        self.max_batch = chunk if chunk else (None if self.batch else 256)
        self.poll_interval, self.max_wait = float(poll_interval), float(max_wait)
        self.max_file_requests, self.max_file_bytes, self.keep_files = (
            int(max_file_requests), int(max_file_bytes), keep_files)
        self.state_dir = str(state_dir) if state_dir else None  # the Batch API ledger: a folder or a URL
        self.prices = load_prices()
        self.stats: Counter = Counter()
        self._client: ChatClient | None = None
        self._lock = threading.Lock()
        self._log: Callable[..., None] = lambda *a, **k: None

    # ---------------------------------------------------------------- protocol

    def model_for(self, stage: Stage) -> str:
        return self.opts.model_for(stage)

    def prompt_version(self, stage: Stage) -> str:
        return prompts.load(stage.name, self.opts.prompt_version).version_id

    def params(self, stage: Stage) -> dict[str, Any]:
        return {**self.opts.as_params(stage), "host": self.host}

    def run(self, stage: Stage, inputs: list[StageInput]) -> list[StageResult]:
        if self.batch:
            return self._run_batch(stage, inputs)
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="llm") as pool:
            return list(pool.map(lambda inp: self._answer_clip(stage, inp), inputs))

    # ---------------------------------------------------------------- wiring

    def attach(self, work: str | Path, log: Callable[..., None]) -> None:
        """The pipeline hands over its work dir (a folder or a URL: the batch ledger) and build log."""
        if self.state_dir is None:
            self.state_dir = join(str(work), "llm_batches")
        lock = threading.Lock()

        def write(event: str, **fields: Any) -> None:
            with lock:
                log(event, **fields)

        self._log = write

    def requests_for(self, stage: Stage, inp: StageInput) -> list[ChatRequest]:
        return build_requests(stage, inp, self.opts)

    def key(self, body: dict[str, Any]) -> str:
        return request_key(body, self.host)

    def cached_output(self, req: ChatRequest, key: str) -> tuple[BaseModel, dict] | None:
        hit = self.cache.get(key)
        if hit is None:
            return None
        try:
            return parse_answer(req, hit.get("content")), hit
        except InvalidAnswer:
            return None  # stored under rules that have since changed: ask again

    def check_ready(self) -> None:
        """Fail before the build starts, not once per clip, when no API key is available."""
        if not self.base_url and not os.environ.get(self.api_key_env):
            raise RuntimeError(f"{self.api_key_env} is not set: the {self.id} backend needs an API key "
                               "(or point --base-url at a local OpenAI-compatible server)")

    def client(self) -> ChatClient:
        with self._lock:
            if self._client is None:
                key = os.environ.get(self.api_key_env, "")
                if not key:
                    if not self.base_url:
                        raise RuntimeError(f"{self.api_key_env} is not set: the {self.id} backend needs an API key "
                                           "(a local server given with --base-url accepts any value)")
                    key = "EMPTY"
                self._client = ChatClient(api_key=key, base_url=self.base_url, timeout=self.timeout,
                                          max_retries=self.max_retries, backoff=self.backoff,
                                          max_backoff=self.max_backoff, rpm=self.rpm, tpm=self.tpm, log=self._log,
                                          limiter=self.shared_limiter, rate_window=self.rate_window)
            return self._client

    def summary(self) -> str:
        s = self.stats
        return (f"{self.id}: {s['sent']} requests sent, {s['cache_hits']} answered from the cache "
                f"({self.cache.root}), {s['reasks']} re-asked, {s['invalid_final']} given up"
                + (f", JSON-mode fallback on {s['json_object']} answers" if s["json_object"] else ""))

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.stats[name] += n

    def _reason(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {str(exc).strip() or repr(exc)}"
        if self._client is not None:
            text = self._client.redact(text)
        return text[:500]

    def _charge(self, usage: Usage, model: str, input_tokens: int, output_tokens: int) -> None:
        usage.requests += 1
        usage.input_tokens += input_tokens
        usage.output_tokens += output_tokens
        cost = self.prices.cost(model, input_tokens, output_tokens, batch=self.batch)
        usage.cost_usd = None if cost is None or usage.cost_usd is None else usage.cost_usd + cost

    def _notes(self, stage: Stage, modes: set[str], hits: int, total: int) -> dict[str, str]:
        version = self.prompt_version(stage)
        mode = "json_object" if "json_object" in modes else "json_schema"
        if mode == "json_object":
            version += "+json_object"  # provenance: a server without json_schema answered in JSON mode
        cache = "hit" if hits == total else ("miss" if hits == 0 else "partial")
        return {"backend": self.id, "prompt_version": version, "structured": mode, "cache": cache}

    # ---------------------------------------------------------------- online

    def _answer_clip(self, stage: Stage, inp: StageInput) -> StageResult:
        usage = Usage(cost_usd=0.0)
        model = self.model_for(stage)
        try:
            reqs = self.requests_for(stage, inp)
            outputs, modes, hits = [], set(), 0
            for req in reqs:
                output, mode, answered_by, cached = self._answer_online(req, usage)
                outputs.append((req, output))
                modes.add(mode)
                hits += cached
                model = answered_by or model
            return StageResult(clip_id=inp.clip_id, output=merge_parts(outputs), model=model, usage=usage,
                               notes=self._notes(stage, modes, hits, len(reqs)))
        except Exception as exc:  # noqa: BLE001 - one clip's failure is its own
            self._log("llm_failed", stage=stage.name, id=inp.clip_id, reason=self._reason(exc))
            return StageResult(clip_id=inp.clip_id, error=self._reason(exc), model=model, usage=usage)

    def _answer_online(self, req: ChatRequest, usage: Usage) -> tuple[BaseModel, str, str | None, bool]:
        original = self.key(req.body)
        hit = self.cached_output(req, original)
        if hit is not None:
            self._count("cache_hits")
            return hit[0], hit[1].get("structured", "json_schema"), hit[1].get("model"), True
        current, key, problem = req, original, ""
        for attempt in range(self.max_reasks + 1):
            if attempt:
                hit = self.cached_output(current, key)
                if hit is not None:
                    self._count("cache_hits")
                    self._store(original, hit[1]["content"], hit[1].get("model"), hit[1].get("usage", {}),
                                hit[1].get("structured", "json_schema"))
                    return hit[0], hit[1].get("structured", "json_schema"), hit[1].get("model"), True
            answer = self.client().complete(current)
            self._count("sent")
            self._charge(usage, answer.model or req.body["model"], answer.input_tokens, answer.output_tokens)
            self._log("llm_request", stage=req.stage, id=req.label, key=key[:16], attempt=attempt,
                      input_tokens=answer.input_tokens, output_tokens=answer.output_tokens, mode=answer.structured)
            try:
                if answer.finish_reason == "length":
                    raise InvalidAnswer("the answer was cut off at the token limit; be more concise")
                output = parse_answer(current, answer.content)
            except InvalidAnswer as exc:
                problem = str(exc)
                self._count("reasks" if attempt < self.max_reasks else "invalid_final")
                self._log("llm_invalid", stage=req.stage, id=req.label, attempt=attempt, problem=problem[:300])
                current = with_reask(req, answer.content, problem)
                key = self.key(current.body)
                continue
            if answer.structured == "json_object":
                self._count("json_object")
            tokens = {"input": answer.input_tokens, "output": answer.output_tokens}
            self._store(key, answer.content, answer.model, tokens, answer.structured)
            if key != original:
                self._store(original, answer.content, answer.model, tokens, answer.structured)
            return output, answer.structured, answer.model, False
        raise InvalidAnswer(f"no valid answer after {self.max_reasks + 1} tries; last problem: {problem}")

    def _store(self, key: str, content: str, model: str | None, usage: dict, structured: str) -> None:
        self.cache.put(key, content, model, usage, structured)

    # ---------------------------------------------------------------- Batch API

    def _run_batch(self, stage: Stage, inputs: list[StageInput]) -> list[StageResult]:
        by_id = {inp.clip_id: inp for inp in inputs}
        parts: dict[str, list] = {}
        got: dict[str, dict] = {cid: {} for cid in by_id}
        errors: dict[str, str] = {}
        usage = {cid: Usage(cost_usd=0.0) for cid in by_id}
        models: dict[str, str] = {}
        hits: Counter = Counter()
        state: dict[tuple, dict] = {}  # (clip, part) -> original key, re-asks, resubmits
        stubs: dict[str, ChatRequest] = {}  # key -> request without its body (for validation)
        users: dict[str, list[tuple]] = {}  # key -> (clip, part) slots it answers

        def first_round() -> Iterator[tuple[ChatRequest, str]]:
            for cid, inp in by_id.items():
                try:
                    reqs = self.requests_for(stage, inp)
                except Exception as exc:  # noqa: BLE001
                    errors[cid] = self._reason(exc)
                    continue
                parts[cid] = [r.part for r in reqs]
                for req in reqs:
                    key = self.key(req.body)
                    state[(cid, req.part)] = {"original": key, "reasks": 0, "resubmits": 0}
                    hit = self.cached_output(req, key)
                    if hit is not None:
                        got[cid][req.part] = hit[0]
                        models[cid] = hit[1].get("model") or models.get(cid, "")
                        hits[cid] += 1
                        self._count("cache_hits")
                        continue
                    yield req, key

        pending: Iterator[tuple[ChatRequest, str]] = first_round()
        resubmit: set[str] = set()  # keys whose earlier batch gave no answer: never wait on it again
        rnd = 0
        while True:
            users.clear()
            outcomes, too_large = self._batch_round(stage, pending, rnd, stubs, users, resubmit)
            resubmit = set()
            if not users:
                break
            retry: list[tuple[str, Any, str | None, str]] = []  # (clip, part, bad content, problem)
            for key, slots in users.items():
                outcome = outcomes.get(key)
                stub = stubs[key]
                for n, (cid, part) in enumerate(slots):
                    st = state[(cid, part)]
                    if key in too_large:
                        errors[cid] = too_large[key]
                        continue
                    if outcome is None or (outcome.status_code != 200 and _retryable(outcome.status_code)):
                        st["resubmits"] += 1
                        why = "the batch ended without this request" if outcome is None else outcome.error
                        if st["resubmits"] > MAX_RESUBMITS:
                            errors[cid] = f"Batch API: {why}"
                        else:
                            resubmit.add(key)
                            retry.append((cid, part, st.get("bad"), st.get("problem")))
                        continue
                    if outcome.status_code != 200:
                        errors[cid] = f"Batch API: HTTP {outcome.status_code}: {outcome.error}"
                        continue
                    body = outcome.body or {}
                    model = body.get("model") or stub.body.get("model", "")
                    u = body.get("usage") or {}
                    if n == 0:  # one request may answer identical slots; it is paid once
                        self._count("sent")
                        self._charge(usage[cid], model, int(u.get("prompt_tokens") or 0),
                                     int(u.get("completion_tokens") or 0))
                    choice = (body.get("choices") or [{}])[0]
                    content = (choice.get("message") or {}).get("content")
                    try:
                        if choice.get("finish_reason") == "length":
                            raise InvalidAnswer("the answer was cut off at the token limit; be more concise")
                        output = parse_answer(stub, content)
                    except InvalidAnswer as exc:
                        st["reasks"] += 1
                        if st["reasks"] > self.max_reasks:
                            self._count("invalid_final")
                            errors[cid] = f"InvalidAnswer: no valid answer after {st['reasks']} tries; " \
                                          f"last problem: {exc}"
                        else:
                            self._count("reasks")
                            st["bad"], st["problem"] = content, str(exc)
                            retry.append((cid, part, content, str(exc)))
                        self._log("llm_invalid", stage=stage.name, id=stub.label, problem=str(exc)[:300])
                        continue
                    got[cid][part] = output
                    models[cid] = model
                    tokens = {"input": int(u.get("prompt_tokens") or 0), "output": int(u.get("completion_tokens") or 0)}
                    self._store(key, content, model, tokens, "json_schema")
                    if st["original"] != key:
                        self._store(st["original"], content, model, tokens, "json_schema")
            if not retry:
                break
            rnd += 1
            pending = self._retry_requests(stage, by_id, retry, errors)

        results = []
        for cid in by_id:
            if cid in errors:
                results.append(StageResult(clip_id=cid, error=errors[cid],
                                           model=self.model_for(stage), usage=usage[cid]))
                continue
            wanted = parts.get(cid, [])
            if not wanted or any(p not in got[cid] for p in wanted):
                results.append(StageResult(clip_id=cid, error="Batch API returned no answer", usage=usage[cid],
                                           model=self.model_for(stage)))
                continue
            answers = [(_stub_part(p), got[cid][p]) for p in wanted]
            results.append(StageResult(
                clip_id=cid, output=merge_parts(answers), model=models.get(cid) or self.model_for(stage),
                usage=usage[cid], notes=self._notes(stage, {"json_schema"}, hits[cid], len(wanted))))
        return results

    def _retry_requests(self, stage: Stage, by_id: dict, retry: list,
                        errors: dict) -> Iterator[tuple[ChatRequest, str]]:
        per_clip: dict[str, list] = {}
        for cid, part, bad, problem in retry:
            per_clip.setdefault(cid, []).append((part, bad, problem))
        for cid, items in per_clip.items():
            try:
                originals = {r.part: r for r in self.requests_for(stage, by_id[cid])}
            except Exception as exc:  # noqa: BLE001
                errors[cid] = self._reason(exc)
                continue
            for part, bad, problem in items:
                req = originals[part]
                if problem:
                    req = with_reask(req, bad, problem)
                yield req, self.key(req.body)

    def _batch_round(self, stage: Stage, pending: Iterator[tuple[ChatRequest, str]], rnd: int,
                     stubs: dict[str, ChatRequest], users: dict[str, list],
                     resubmit: set[str]) -> tuple[dict, dict[str, str]]:
        client = self.client()
        state_dir = self.state_dir or join(str(self.cache.root), "batches")
        ledger = BatchLedger(state_dir)
        # the request files only travel to the API: a URL ledger has them made on this machine
        local = Path(tempfile.gettempdir()) / "mv4all-batch-files" if is_url(state_dir) else Path(state_dir) / "files"
        runner = BatchRunner(client.client, client.call, ledger, self.host, poll_interval=self.poll_interval,
                             max_wait=self.max_wait, log=self._log)
        splitter = JsonlSplitter(local, prefix=f"{stage.name}-r{rnd}",
                                 max_requests=self.max_file_requests, max_bytes=self.max_file_bytes)
        holders: set[str] = set()
        too_large: dict[str, str] = {}
        seen: set[str] = set()
        for req, key in pending:
            users.setdefault(key, []).append((req.clip_id, req.part))
            if key in seen:
                continue
            seen.add(key)
            stubs[key] = replace(req, body={"model": req.body["model"]})
            holder = None if key in resubmit else ledger.holder(key, self.host)
            if holder is not None:
                holders.add(holder)  # submitted by an earlier, interrupted run: wait for it
                continue
            try:
                splitter.add(key, req.body)
            except RequestTooLarge as exc:
                too_large[key] = f"RequestTooLarge: {exc}"
        files = splitter.close()
        ids = []
        for bf in files:
            ids.append(runner.submit(bf, stage.name))
            if not self.keep_files:
                bf.path.unlink(missing_ok=True)
        if holders:
            self._log("batch_resumed", stage=stage.name, batches=sorted(holders))
        return (runner.collect(sorted(holders) + ids) if holders or ids else {}), too_large


def _retryable(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


def _stub_part(part: Any) -> ChatRequest:
    return ChatRequest(stage="", clip_id="", part=part, output_model=BaseModel, body={}, expect={})


class OpenAIBatchBackend(OpenAIBackend):
    """Same requests through the Batch API: half price, answers within 24 h, resumable."""

    id = "openai-batch"
    batch = True
