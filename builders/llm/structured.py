"""One structured question at a time, outside the build's stages: the LLM judge and the shot-prompt rewrite.

``eval/judge.py`` and ``builders/llm/shot_prompts.py`` each build their own requests (prompt, schema) and
parse their own answers; everything between is this module's ``StructuredAsker``, the same loop as the
builder's online backend (``openai_backend``) over the same parts: the shared content-addressed
``ResponseCache`` (looked up before every try, so a repeat run sends nothing), ``ChatClient`` (retries, rate
limits, JSON-mode fallback), the re-ask prompt (``with_reask``: the rejected answer and why), the price table
and the token counter for a dry run. An accepted answer is stored under the key of the question that got it
and of the original question. The API key is read from the environment by the client only; it is in no
request body, cache record or failure reason.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Sequence, TypeVar

from builders.llm.cache import ResponseCache, host_of, request_key
from builders.llm.client import ChatClient
from builders.llm.cost import load_prices
from builders.llm.requests import ChatRequest, InvalidAnswer, with_reask
from builders.llm.tokens import request_tokens, text_counter

T = TypeVar("T")


@dataclass
class Estimate:
    """What a real run would send: counted from the request bodies themselves, as the builder's dry run."""

    requests: int
    cached: int
    input_tokens: int
    output_tokens: int  # estimated from a stand-in answer
    usd: float | None  # None: the model is not in builders/prices.yaml
    prices_as_of: str
    token_method: str


@dataclass(kw_only=True)
class AskTotals:
    """A run's counts and cost (``StructuredAsker.totals``), or a dry run's estimate; the callers' reports
    extend it with their own records."""

    sent: int = 0
    cache_hits: int = 0
    reasks: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    estimate: Estimate | None = None  # set by a dry run (which sends nothing)


@dataclass
class Asked(Generic[T]):
    """One question's outcome: the accepted value, or ``None`` and the last answer's problem."""

    value: T | None
    error: InvalidAnswer | None = None  # why the last answer was rejected (when none was accepted)
    tries: int = 0  # answers the API gave for this question (re-asks included)
    from_cache: bool = False

    def unwrap(self) -> T:
        """The value, or ``InvalidAnswer`` saying how many tries failed and why the last did."""
        if self.value is None:
            raise InvalidAnswer(f"no valid answer after {self.tries} tries; last problem: {self.error or ''}")
        return self.value


class StructuredAsker(Generic[T]):
    """One run's cache, client and counters for requests whose answers ``parse`` turns into values.

    ``parse(content)`` returns the value or raises ``InvalidAnswer`` with a reason the re-ask passes back;
    a cached answer that no longer parses (rules changed since) is asked again. ``who`` and ``base_url_hint``
    word the missing-key error, ``cut_off`` the re-ask of an answer cut at the token limit.
    """

    def __init__(self, parse: Callable[[str | None], T], *, model: str, base_url: str | None,
                 cache_dir: Path | str | None, api_key_env: str, max_reasks: int, timeout: float, max_retries: int,
                 rpm: int | None, tpm: int | None, who: str, base_url_hint: str, cut_off: str,
                 reason_chars: int = 500) -> None:
        self.parse, self.model, self.api_key_env = parse, model, api_key_env
        self.max_reasks = max(0, int(max_reasks))
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.host = host_of(self.base_url)
        # local OpenAI-compatible servers often predate max_completion_tokens (as the builder's backend)
        self.token_param = "max_tokens" if self.base_url else "max_completion_tokens"
        self.cache = ResponseCache(cache_dir)
        self.client_options = dict(timeout=timeout, max_retries=max_retries, rpm=rpm, tpm=tpm)
        self.who, self.base_url_hint, self.cut_off, self.reason_chars = who, base_url_hint, cut_off, reason_chars
        self.prices = load_prices()
        self.stats: Counter = Counter()
        self.cost: float | None = 0.0
        self._client: ChatClient | None = None
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- parts

    def key(self, body: dict[str, Any]) -> str:
        return request_key(body, self.host)

    def cached(self, key: str) -> T | None:
        hit = self.cache.get(key)
        try:
            return None if hit is None else self.parse(hit.get("content"))
        except InvalidAnswer:
            return None  # stored under rules that have since changed: ask again

    def api_key(self) -> str:
        key = os.environ.get(self.api_key_env, "")
        if not key and not self.base_url:
            raise RuntimeError(f"{self.api_key_env} is not set: {self.who} needs an API key "
                               f"(or {self.base_url_hint} of a local OpenAI-compatible server)")
        return key or "EMPTY"

    def client(self) -> ChatClient:
        with self._lock:
            if self._client is None:
                self._client = ChatClient(api_key=self.api_key(), base_url=self.base_url, **self.client_options)
            return self._client

    def reason(self, exc: BaseException) -> str:
        """A failure as reported: type and message, the API key masked, cut to ``reason_chars``."""
        text = f"{type(exc).__name__}: {str(exc).strip() or repr(exc)}"
        secret = os.environ.get(self.api_key_env)
        return (text.replace(secret, "***") if secret else text)[: self.reason_chars]

    def _count(self, **deltas: int) -> None:
        with self._lock:
            self.stats.update(deltas)

    # ---------------------------------------------------------------- asking

    def ask(self, req: ChatRequest) -> Asked[T]:
        """Cache, else ask; an invalid answer is re-asked with its problem, up to ``max_reasks`` times.
        Errors of the API itself (after the client's retries) propagate."""
        original = self.key(req.body)
        current, key, error = req, original, None
        for attempt in range(self.max_reasks + 1):
            hit = self.cached(key)
            if hit is not None:
                self._count(cache_hits=1)
                return Asked(hit, tries=attempt, from_cache=True)
            answer = self.client().complete(current)
            self._count(sent=1, input_tokens=answer.input_tokens, output_tokens=answer.output_tokens)
            cost = self.prices.cost(answer.model or self.model, answer.input_tokens, answer.output_tokens)
            with self._lock:
                self.cost = None if cost is None or self.cost is None else self.cost + cost
            try:
                if answer.finish_reason == "length":
                    raise InvalidAnswer(f"the answer was cut off at the token limit; {self.cut_off}")
                value = self.parse(answer.content)
            except InvalidAnswer as exc:
                error = exc
                if attempt < self.max_reasks:
                    self._count(reasks=1)
                current = with_reask(req, answer.content, str(exc))
                key = self.key(current.body)
                continue
            usage = {"input": answer.input_tokens, "output": answer.output_tokens}
            for k in {key, original}:  # the original question now has an accepted answer too
                self.cache.put(k, answer.content or "", answer.model, usage, answer.structured)
            return Asked(value, tries=attempt + 1)
        return Asked(None, error=error, tries=self.max_reasks + 1)

    def run(self, reqs: Sequence[ChatRequest], one: Callable[[int], None], *, concurrency: int,
            thread_name_prefix: str) -> None:
        """``one(i)`` for every request, in a thread pool; fails once, before any work, when a request
        is not cached and there is no key. The client is closed at the end."""
        if any(self.cached(self.key(r.body)) is None for r in reqs):
            self.api_key()
        workers = max(1, int(concurrency))
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name_prefix) as pool:
                list(pool.map(one, range(len(reqs))))
        finally:
            if self._client is not None:
                self._client.close()

    def totals(self, report: AskTotals) -> None:
        """The run's counts and cost into ``report``."""
        s = self.stats
        report.sent, report.cache_hits, report.reasks = s["sent"], s["cache_hits"], s["reasks"]
        report.input_tokens, report.output_tokens, report.cost_usd = s["input_tokens"], s["output_tokens"], self.cost

    def estimate(self, reqs: Sequence[ChatRequest], stand_in: str) -> Estimate:
        """Dry run: the requests not in the cache, their input tokens, and ``stand_in`` (an answer's JSON)
        as each one's output; sends nothing and needs no key."""
        counter = text_counter(self.model)
        out_each = counter.count(stand_in)
        todo = [r for r in reqs if self.cached(self.key(r.body)) is None]
        tokens_in = sum(request_tokens(r.body).text for r in todo)
        tokens_out = out_each * len(todo)
        return Estimate(requests=len(todo), cached=len(reqs) - len(todo), input_tokens=tokens_in,
                        output_tokens=tokens_out, usd=self.prices.cost(self.model, tokens_in, tokens_out),
                        prices_as_of=self.prices.as_of, token_method=counter.method)
