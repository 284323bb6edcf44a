"""Dollars from tokens, with the price table's date attached to every figure.

Prices live in ``builders/prices.yaml`` (dated) rather than code, so updating them is a data change
and an estimate can say how old its prices are. A model missing from the table is priced
"unknown" instead of guessed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PRICES_FILE = Path(__file__).parent.parent / "prices.yaml"  # builders/prices.yaml (package data)


@dataclass(frozen=True)
class Prices:
    as_of: str
    batch_discount: float
    models: dict[str, tuple[float, float]]  # model -> (input, output) USD per 1M tokens, standard tier

    def for_model(self, model: str) -> tuple[float, float] | None:
        """Exact name, a dated variant (gpt-4o-mini-2024-07-18), or a provider-prefixed one."""
        name = model.rsplit("/", 1)[-1].lower()
        best = None
        for key in self.models:
            if (name == key or name.startswith(key + "-")) and (best is None or len(key) > len(best)):
                best = key
        return self.models[best] if best else None

    def cost(self, model: str, input_tokens: int, output_tokens: int, batch: bool = False) -> float | None:
        price = self.for_model(model)
        if price is None:
            return None
        factor = self.batch_discount if batch else 1.0
        return (input_tokens * price[0] + output_tokens * price[1]) / 1e6 * factor


@functools.lru_cache(maxsize=None)
def load_prices(path: str | None = None) -> Prices:
    data = yaml.safe_load(Path(path or PRICES_FILE).read_text(encoding="utf-8"))
    models = {str(k).lower(): (float(v["input"]), float(v["output"])) for k, v in (data.get("models") or {}).items()}
    return Prices(as_of=str(data.get("as_of", "unknown")), batch_discount=float(data.get("batch_discount", 0.5)),
                  models=models)


@dataclass
class StageEstimate:
    """What one stage would send: counted from the real request bodies."""

    stage: str
    model: str
    clips: int = 0
    requests: int = 0
    cached: int = 0  # requests already answered in the cache (free)
    input_tokens: int = 0
    output_tokens: int = 0  # expected (see dryrun: from stand-in answers)
    images: int = 0
    image_tokens: int = 0
    request_bytes: int = 0  # JSONL bytes of the requests (batch files)
    images_unknown: bool = False
    methods: set[str] = field(default_factory=set)

    def cost(self, prices: Prices, batch: bool) -> float | None:
        if self.images_unknown:
            return None
        return prices.cost(self.model, self.input_tokens, self.output_tokens, batch=batch)

    def scaled(self, factor: float) -> "StageEstimate":
        return StageEstimate(
            stage=self.stage, model=self.model, clips=round(self.clips * factor),
            requests=round(self.requests * factor), cached=round(self.cached * factor),
            input_tokens=round(self.input_tokens * factor),
            output_tokens=round(self.output_tokens * factor), images=round(self.images * factor),
            image_tokens=round(self.image_tokens * factor), request_bytes=round(self.request_bytes * factor),
            images_unknown=self.images_unknown, methods=set(self.methods))
