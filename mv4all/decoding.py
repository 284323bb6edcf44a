"""Decoding settings: how a model writes, where a run keeps its defaults, where an answer ends.

Decoding belongs to the run: training writes ``generation_config.json`` with a ``max_new_tokens``
that covers its longest target, and every prediction line records the settings that produced it.
The defaults do not penalise repetition: the 15-frame format repeats phrases by design, and
transformers' ``repetition_penalty`` also punishes the prompt's genre, MV type and lyric words;
a penalty, when asked for, applies to generated tokens only.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

GENERATION_CONFIG_FILE = "generation_config.json"
STOP = "###"  # the template closes the answer with "\n###"
DEFAULT_MAX_NEW_TOKENS = 1024  # runs record their own; this serves runs that predate that


@dataclass
class Decoding:
    """How text is generated; ``strategy`` picks greedy, beam or sampling.

    ``repetition_penalty`` (> 1 to use it) counts generated tokens only; ``no_repeat_ngram_size``
    is off by default because frame descriptions legitimately repeat short phrases.
    """

    strategy: str = "greedy"  # greedy | beam | sample
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    num_beams: int = 4  # beam only
    temperature: float = 0.7  # sample only
    top_p: float = 0.9  # sample only
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self):
        if self.strategy not in ("greedy", "beam", "sample"):
            raise ValueError(f"decoding strategy must be greedy, beam or sample, got {self.strategy!r}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    def generate_kwargs(self) -> dict[str, Any]:
        """``generate()`` arguments; the repetition penalty is a logits processor (see ``logits_processors``)."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": int(self.max_new_tokens),
            "do_sample": self.strategy == "sample",
            "num_beams": int(self.num_beams) if self.strategy == "beam" else 1,
        }
        if self.no_repeat_ngram_size:
            kwargs["no_repeat_ngram_size"] = int(self.no_repeat_ngram_size)
        if self.strategy == "sample":
            kwargs.update(temperature=float(self.temperature), top_p=float(self.top_p))
        return kwargs

    def logits_processors(self, prompt_length: int) -> list:
        """A repetition penalty that ignores the ``prompt_length`` prompt tokens (transformers' counts them)."""
        if self.repetition_penalty == 1.0:
            return []
        from transformers import RepetitionPenaltyLogitsProcessor

        return [RepetitionPenaltyLogitsProcessor(float(self.repetition_penalty), prompt_ignore_length=prompt_length)]

    def record(self) -> dict[str, Any]:
        """What a prediction line stores: only settings that change the text."""
        out = {"strategy": self.strategy, **self.generate_kwargs()}
        if self.repetition_penalty != 1.0:
            out["repetition_penalty"] = float(self.repetition_penalty)
            out["repetition_penalty_scope"] = "generated tokens"
        return out

    def replace(self, **changes: Any) -> Decoding:
        known = {f.name for f in fields(self)}
        return Decoding(**{**asdict(self), **{k: v for k, v in changes.items() if k in known and v is not None}})


def save_generation_config(folder: str | os.PathLike, decoding: Decoding) -> Path:
    """Write ``generation_config.json`` (transformers' format, plus our ``mv4all`` block)."""
    from transformers import GenerationConfig

    config = GenerationConfig(**decoding.generate_kwargs())
    config.validate()  # the repetition penalty stays in our block: transformers' own counts the prompt
    data = config.to_diff_dict()
    data.pop("transformers_version", None)
    data["mv4all"] = asdict(decoding)
    path = Path(folder) / GENERATION_CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    from .safety import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def load_generation_config(folder: str | os.PathLike | None) -> Decoding | None:
    """The decoding a run directory recorded, or ``None`` if it has none of ours."""
    if folder is None:
        return None
    path = Path(folder) / GENERATION_CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    block = data.get("mv4all") if isinstance(data, dict) else None
    if not isinstance(block, dict):
        return None
    return Decoding().replace(**block)


def clean_generation(text: str) -> str:
    """Cut at the template's end marker: the model writes ``...\\n###`` after the answer."""
    return text.split(STOP, 1)[0].strip()
