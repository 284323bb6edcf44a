"""``--dry-run``: price the build from the requests it would really send, and send none.

The wrapper poses as the paid backend (same id and params, so stage keys and finished work
in the work dir are recognised) and builds every request body exactly as a real run would;
it counts tokens, images and bytes, looks each request up in the shared cache (a hit is
free), and answers with the offline backend's text so that later stages get realistic
inputs to price. Output tokens are therefore an estimate (the stand-in answer's length).
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from builders.llm.batch import MAX_BYTES, MAX_REQUESTS, jsonl_line
from builders.llm.cost import Prices, StageEstimate, load_prices
from builders.llm.tokens import request_tokens, text_counter
from builders.stages import Stage, StageInput, StageResult, Usage


class DryRunBackend:
    max_batch = None

    def __init__(self, real: Any) -> None:
        from builders.llm.offline import OfflineBackend

        self.real = real
        self.id = real.id
        self.stand_in = OfflineBackend()
        self.estimates: dict[str, StageEstimate] = {}
        self.prices: Prices = load_prices()
        self.failed: dict[str, int] = {}

    def model_for(self, stage: Stage) -> str:
        return self.real.model_for(stage)

    def prompt_version(self, stage: Stage) -> str:
        return self.real.prompt_version(stage)

    def params(self, stage: Stage) -> dict[str, Any]:
        return self.real.params(stage)

    def run(self, stage: Stage, inputs: list[StageInput]) -> list[StageResult]:
        est = self.estimates.setdefault(stage.name, StageEstimate(stage=stage.name, model=self.model_for(stage)))
        answers = {r.clip_id: r for r in self.stand_in.run(stage, inputs)}
        counter = text_counter(self.model_for(stage))
        results = []
        for inp in inputs:
            answer = answers.get(inp.clip_id)
            try:
                reqs = self.real.requests_for(stage, inp)
            except Exception as exc:  # noqa: BLE001 - a clip that cannot be asked is not priced
                self.failed[stage.name] = self.failed.get(stage.name, 0) + 1
                results.append(StageResult(clip_id=inp.clip_id, error=f"{type(exc).__name__}: {exc}"))
                continue
            est.clips += 1
            out_tokens = counter.count(answer.output.model_dump_json()) if answer is not None and answer.ok else 0
            for req in reqs:
                key = self.real.key(req.body)
                if self.real.cached_output(req, key) is not None:
                    est.cached += 1
                    continue
                tokens = request_tokens(req.body)
                est.requests += 1
                est.input_tokens += tokens.text + tokens.images
                est.images += tokens.image_count
                est.image_tokens += tokens.images
                est.images_unknown |= not tokens.images_known
                est.output_tokens += out_tokens // max(len(reqs), 1)
                est.request_bytes += len(jsonl_line(key, req.body))
                est.methods.add(tokens.method)
            if answer is None:
                answer = StageResult(clip_id=inp.clip_id, error="no stand-in answer")
            results.append(StageResult(clip_id=inp.clip_id, output=answer.output, error=answer.error,
                                       model=self.model_for(stage), usage=Usage(), notes={"dry_run": "stand-in"}))
        return results

    # ---------------------------------------------------------------- report

    def totals(self, unanalysed: int = 0) -> dict[str, StageEstimate]:
        """Per-stage estimates; clips not analysed yet are added at the mean per analysed clip."""
        out = {}
        for name, est in self.estimates.items():
            if unanalysed and est.clips:
                extra = est.scaled(unanalysed / est.clips)
                merged = est.scaled(1.0)
                for f in ("clips", "requests", "cached", "input_tokens", "output_tokens", "images", "image_tokens",
                          "request_bytes"):
                    setattr(merged, f, getattr(est, f) + getattr(extra, f))
                out[name] = merged
            else:
                out[name] = est
        return out

    def table(self, unanalysed: int = 0, max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES) -> Table:
        upper = unanalysed > 0
        totals = self.totals(unanalysed)
        methods = sorted({m for e in totals.values() for m in e.methods}) or ["approx."]
        title = f"dry run: {self.real.id} (prices as of {self.prices.as_of}; text tokens {', '.join(methods)})"
        if upper:
            title += f"\nUPPER BOUND: {unanalysed} clips not analysed yet are assumed to survive the static filter"
        table = Table(title=title)
        for col in ("stage", "model", "clips", "requests", "cached", "input tok", "images", "output tok (est.)",
                    "batch files", "standard $", "batch $"):
            table.add_column(col, justify="left" if col in ("stage", "model") else "right")
        sums = {"requests": 0, "cached": 0, "input": 0, "output": 0, "std": 0.0, "batch": 0.0, "unknown": False}
        for name, est in totals.items():
            std, bat = est.cost(self.prices, False), est.cost(self.prices, True)
            files = _files_needed(est.requests, est.request_bytes, max_requests, max_bytes)
            table.add_row(name, est.model, str(est.clips), f"{est.requests:,}", f"{est.cached:,}",
                          f"{est.input_tokens:,}", f"{est.images:,}", f"{est.output_tokens:,}", str(files),
                          _usd(std), _usd(bat))
            sums["requests"] += est.requests
            sums["cached"] += est.cached
            sums["input"] += est.input_tokens
            sums["output"] += est.output_tokens
            if std is None:
                sums["unknown"] = True
            else:
                sums["std"] += std
                sums["batch"] += bat or 0.0
        unknown = sums["unknown"]
        table.add_row("total" + (" (upper bound)" if upper else ""), "", "", f"{sums['requests']:,}",
                      f"{sums['cached']:,}", f"{sums['input']:,}", "", f"{sums['output']:,}", "",
                      "unknown" if unknown else _usd(sums["std"]), "unknown" if unknown else _usd(sums["batch"]))
        return table


def summary_lines(dry: DryRunBackend, unanalysed: int = 0) -> list[str]:
    """The same figures as plain lines (greppable in logs, unaffected by terminal width)."""
    lines = []
    std_total, bat_total, unknown = 0.0, 0.0, False
    for name, est in dry.totals(unanalysed).items():
        std, bat = est.cost(dry.prices, False), est.cost(dry.prices, True)
        unknown |= std is None
        std_total += std or 0.0
        bat_total += bat or 0.0
        lines.append(f"{name}: {est.requests} requests ({est.cached} cached), {est.input_tokens} input tokens "
                     f"({est.images} images), ~{est.output_tokens} output tokens, standard {_usd(std)}, "
                     f"batch {_usd(bat)} [{est.model}]")
    methods = sorted({m for e in dry.estimates.values() for m in e.methods}) or ["approx."]
    if unanalysed and not dry.estimates:
        return [f"UPPER BOUND unknown: none of the {unanalysed} clips has been analysed yet, so there is nothing "
                "to extrapolate from; run the dry run without --skip-cpu"]
    label = f"UPPER BOUND ({unanalysed} clips not analysed yet, assumed to survive the static filter) " \
        if unanalysed else ""
    lines.append(f"{label}total: standard {'unknown' if unknown else _usd(std_total)}, batch "
                 f"{'unknown' if unknown else _usd(bat_total)} (prices as of {dry.prices.as_of}; "
                 f"text tokens {', '.join(methods)})")
    return lines


def _files_needed(requests: int, nbytes: int, max_requests: int, max_bytes: int) -> int:
    if not requests:
        return 0
    return max(-(-requests // max_requests), -(-nbytes // max_bytes))


def _usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.4f}" if value < 1 else f"${value:,.2f}"
