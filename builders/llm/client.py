"""Online chat completions: the official client, paced, retried, and honest about fallbacks.

The ``openai`` client's own retries are off so that one policy (tenacity) decides: 429s wait
for the server's ``retry-after``, 5xx/timeouts/connection errors back off exponentially, and
everything else fails at once with its reason. A server that rejects ``json_schema`` flips
this client to JSON mode for the rest of the run, and every answer says which mode made it.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import openai
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from builders.llm.requests import ChatRequest, json_mode
from builders.llm.tokens import request_tokens

RETRYABLE_STATUS = {408, 409, 429}


@dataclass
class Answer:
    content: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    structured: str  # "json_schema" or "json_object"
    finish_reason: str | None = None
    parse_error: str | None = None  # what ``parse`` objected to, if anything


class RateLimiter:
    """Requests and tokens per minute; ``None`` means unlimited.

    The limits are enforced over a rolling ``window`` of seconds, scaled to it (60: the minute the
    limits are quoted in; 1: the same rate without bursts, the way providers may enforce it over
    shorter periods). :meth:`reserve` never blocks, so the same record can serve one process
    (:meth:`acquire`) or a whole cluster from a shared actor (``builders.engines.ray_engine``).
    """

    def __init__(self, rpm: int | None = None, tpm: int | None = None, clock: Callable[[], float] = time.monotonic,
                 window: float = 60.0):
        if window <= 0:
            raise ValueError(f"the rate window must be positive, not {window}")
        self.rpm, self.tpm, self.clock, self.window = rpm, tpm, clock, float(window)
        scale = self.window / 60.0
        self._max_requests = max(1, int(rpm * scale)) if rpm else None
        self._max_tokens = max(1, int(tpm * scale)) if tpm else None
        self.events: collections.deque[tuple[float, int]] = collections.deque()
        self.lock = threading.Lock()

    def reserve(self, tokens: int) -> float:
        """Take a slot for a request of ``tokens`` now and return 0, or return the seconds to wait."""
        if not self.rpm and not self.tpm:
            return 0.0
        with self.lock:
            now = self.clock()
            while self.events and now - self.events[0][0] >= self.window:
                self.events.popleft()
            used = sum(t for _, t in self.events)
            fits_r = self._max_requests is None or len(self.events) < self._max_requests
            fits_t = self._max_tokens is None or used + tokens <= self._max_tokens or not self.events
            if fits_r and fits_t:
                self.events.append((now, tokens))
                return 0.0
            return max(self.window - (now - self.events[0][0]), 0.0) + 0.01

    def acquire(self, tokens: int) -> None:
        """Wait until a request of ``tokens`` fits, and take its slot."""
        while (wait := self.reserve(tokens)) > 0:
            time.sleep(min(wait, 5.0))


def retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(float(value) / divisor, 0.0)
            except ValueError:
                continue
    return None


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, openai.InternalServerError)):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(exc, openai.APIStatusError) and (status in RETRYABLE_STATUS or (status or 0) >= 500)


def rejects_json_schema(exc: BaseException) -> bool:
    if not isinstance(exc, (openai.BadRequestError, openai.UnprocessableEntityError)):
        return False
    text = str(exc).lower()
    return any(word in text for word in ("response_format", "json_schema", "structured output"))


class ChatClient:
    def __init__(self, *, api_key: str, base_url: str | None, timeout: float = 120.0, max_retries: int = 6,
                 backoff: float = 1.0, max_backoff: float = 60.0, rpm: int | None = None, tpm: int | None = None,
                 log: Callable[..., None] | None = None, limiter: Any = None, rate_window: float = 60.0) -> None:
        self._secret = api_key
        self.client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        # ``limiter``: anything with ``acquire(tokens)`` shared by several clients (a cluster-wide one)
        self.limiter = limiter if limiter is not None else RateLimiter(rpm, tpm, window=rate_window)
        self.structured = "json_schema"
        self._lock = threading.Lock()
        self.log = log or (lambda *a, **k: None)

    def redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hinted = retry_after(exc) if exc is not None else None
        if hinted is not None:
            return min(hinted, self.max_backoff)
        base = self.backoff * (2 ** (state.attempt_number - 1))
        return min(base, self.max_backoff) * (0.5 + random.random() / 2)

    def _before_sleep(self, stage: str, label: str) -> Callable[[RetryCallState], None]:
        def note(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self.log("llm_retry", stage=stage, id=label, attempt=state.attempt_number,
                     error=self.redact(f"{type(exc).__name__}: {exc}")[:300])
        return note

    def _retrying(self, stage: str, label: str) -> Retrying:
        return Retrying(stop=stop_after_attempt(self.max_retries + 1), wait=self._wait,
                        retry=retry_if_exception(is_retryable), reraise=True,
                        before_sleep=self._before_sleep(stage, label))

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Any other API call (files, batches) under the same retry policy."""
        for attempt in self._retrying(what, ""):
            with attempt:
                return fn(*args, **kwargs)
        raise AssertionError("unreachable")

    def complete(self, req: ChatRequest) -> Answer:
        """One answer for one request (retried); raises the last error when retries run out."""
        max_out = req.body.get("max_completion_tokens") or req.body.get("max_tokens") or 0
        est = (request_tokens(req.body).total or 0) + int(max_out)
        for attempt in self._retrying(req.stage, req.label):
            with attempt:
                self.limiter.acquire(est)
                mode = self.structured
                try:
                    return self._call(req, mode)
                except openai.APIStatusError as exc:
                    if mode == "json_schema" and rejects_json_schema(exc):
                        with self._lock:
                            self.structured = "json_object"
                        self.log("llm_fallback", stage=req.stage, reason=self.redact(str(exc))[:300])
                        return self._call(req, "json_object")
                    raise
        raise AssertionError("unreachable")

    def _call(self, req: ChatRequest, mode: str) -> Answer:
        chat = self.client.chat.completions.with_raw_response
        if mode == "json_schema":
            kwargs: dict[str, Any] = {k: v for k, v in req.body.items() if k != "response_format"}
            raw = chat.parse(response_format=req.output_model, **kwargs)
        else:
            raw = chat.create(**json_mode(req.body))
        data = raw.http_response.json()
        choice = (data.get("choices") or [{}])[0]
        usage = data.get("usage") or {}
        answer = Answer(content=(choice.get("message") or {}).get("content"), model=data.get("model"),
                        input_tokens=int(usage.get("prompt_tokens") or 0),
                        output_tokens=int(usage.get("completion_tokens") or 0), structured=mode,
                        finish_reason=choice.get("finish_reason"))
        if mode == "json_schema":
            try:
                raw.parse()  # the client's own structured-output parsing (pydantic)
            except Exception as exc:  # noqa: BLE001 - an unparseable answer is re-asked, not fatal
                answer.parse_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return answer

    def close(self) -> None:
        self.client.close()
