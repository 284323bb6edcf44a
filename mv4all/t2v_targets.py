"""Text-to-video targets and their prompt budgets: what a shot list is planned for.

A target is data (``shot_targets.yaml``: clip length, fps and a prompt budget in tokens or words per model
family), read and validated here. Budgets in tokens are counted exactly when the target's tokenizer file is
already on this machine (its ``tokenizer`` entry: the local Hugging Face cache or a path; nothing is
downloaded), else with ``approx_tokens``, a documented and deliberately generous estimate.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import yaml
from pydantic import Field, ValidationError

from mv4all.schema import Record

TARGETS_FILE = Path(__file__).with_name("shot_targets.yaml")
WORDS_PER_TOKEN_GUESS = 1.5  # words -> tokens when asking an LLM for "at most N words" (approx_tokens is ~1.3-1.5)


class TargetsError(ValueError):
    """A targets file that cannot be read, or a target name it does not hold."""


# --------------------------------------------------------------------------- targets


class TokenizerRef(Record):
    """Where a target's tokenizer file would be: ``repo`` + ``file`` in the local Hugging Face cache, or ``file``
    alone as a local path. Only ever read if already present; never downloaded."""

    repo: str | None = None
    file: str

    @property
    def label(self) -> str:
        return f"{self.repo}/{self.file}" if self.repo else self.file


class PromptBudget(Record):
    unit: Literal["tokens", "words"]
    amount: int = Field(gt=0)  # tokens: the encoder's maximum sequence length, special tokens included
    reserved: int = Field(0, ge=0)  # special tokens the encoder adds itself
    encoder: str = ""
    tokenizer: TokenizerRef | None = None

    @property
    def usable(self) -> int:
        return self.amount - self.reserved

    def describe(self) -> str:
        extra = f" ({self.reserved} reserved)" if self.reserved else ""
        return f"{self.amount} {self.unit}{extra}"


class T2VTarget(Record):
    """One text-to-video model family's defaults, as ``shot_targets.yaml`` lists them."""

    name: str
    model: str
    clip_seconds: float = Field(ge=0.1)
    fps: float = Field(gt=0)
    frames: int | None = None
    prompt_budget: PromptBudget
    source: str = ""


def load_targets(path: str | Path | None = None) -> dict[str, T2VTarget]:
    """The targets of a YAML file (the packaged one by default), by lower-case name."""
    path = Path(path) if path else TARGETS_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TargetsError(f"{path}: cannot read the targets file ({exc})") from None
    entries = data.get("targets") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise TargetsError(f"{path}: expected a `targets:` mapping of name -> settings")
    out: dict[str, T2VTarget] = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict):
            raise TargetsError(f"{path}: target {name!r} must be a mapping")
        entry = {"name": str(name), **entry}
        ref = (entry.get("prompt_budget") or {}).get("tokenizer") if isinstance(entry.get("prompt_budget"), dict) \
            else None
        if isinstance(ref, dict) and not ref.get("repo") and ref.get("file"):  # a local path: relative to the YAML
            entry["prompt_budget"] = {**entry["prompt_budget"],
                                      "tokenizer": {"file": str((path.parent / Path(ref["file"]).expanduser()))}}
        try:
            target = T2VTarget.model_validate(entry)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first.get("loc", ())))
            raise TargetsError(f"{path}: target {name!r}: {where}: {first.get('msg')}") from None
        if target.prompt_budget.usable <= 0:
            raise TargetsError(f"{path}: target {name!r}: prompt_budget.reserved leaves no room for a prompt")
        if target.name.lower() in out:
            raise TargetsError(f"{path}: target {name!r} is listed twice")
        out[target.name.lower()] = target
    return out


def get_target(name: str, path: str | Path | None = None) -> T2VTarget:
    targets = load_targets(path)
    key = name.strip().lower()
    if key not in targets:
        raise TargetsError(f"unknown target {name!r}; known: {', '.join(t.name for t in targets.values())}")
    return targets[key]


# --------------------------------------------------------------------------- counting

_WORD = re.compile(r"[^\W\d_]+")
_DIGIT = re.compile(r"\d")
_PUNCT = re.compile(r"[^\w\s]|_")


def approx_tokens(text: str) -> int:
    """A deliberately generous estimate of a T5 / CLIP / Llama-style tokenizer's count (no special tokens):
    1.3 tokens per word (a run of letters) + 1 per punctuation mark + 1 per digit, rounded up.

    Why generous: English prose is commonly put at about 1.3 sub-word tokens per word *including* punctuation
    for vocabularies of this size; here words alone count 1.3, and every punctuation mark (T5 and CLIP split most
    of them off as pieces of their own) and every digit (CLIP spends a token on each) comes on top. It is an
    estimate, not a guarantee, and it was not compared with the real tokenizers (none is available offline here):
    a prompt of many rare long words can exceed it. Name the target's tokenizer in the targets file (and have it
    on this machine) to count exactly.
    """
    words = len(_WORD.findall(text))
    return math.ceil(1.3 * words) + len(_PUNCT.findall(text)) + len(_DIGIT.findall(text))


def count_words(text: str) -> int:
    return len(text.split())


@dataclass(frozen=True)
class Counter:
    """How a target's prompts are measured: ``used(text)`` is compared with the budget's ``amount``."""

    budget: PromptBudget
    method: str  # "approx.", "tokenizer <file>" or "words"
    tokens: Callable[[str], int]  # tokens of the text alone (no special tokens)

    @property
    def exact(self) -> bool:
        return self.method != "approx."

    def token_estimate(self, text: str) -> int:
        """The encoder's sequence length for this prompt: its tokens plus the reserved special tokens."""
        return self.tokens(text) + self.budget.reserved

    def used(self, text: str) -> int:
        return count_words(text) if self.budget.unit == "words" else self.token_estimate(text)

    def fits(self, text: str) -> bool:
        return self.used(text) <= self.budget.amount

    def remaining_words(self, prefix: str) -> int:
        """How many words may follow ``prefix`` (what an LLM is asked for; its answer is still counted)."""
        if self.budget.unit == "words":
            return max(1, self.budget.amount - count_words(prefix))
        return max(1, int((self.budget.amount - self.token_estimate(prefix)) / WORDS_PER_TOKEN_GUESS))


@functools.lru_cache(maxsize=16)
def _exact_tokens(repo: str | None, file: str) -> tuple[str, Callable[[str], int]] | None:
    """A tokenizer's count function when its file is on this machine; None otherwise (or when it will not load)."""
    path: Path | None = None
    if repo:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        hit = try_to_load_from_cache(repo, file)
        path = Path(hit) if isinstance(hit, str) else None
    else:
        path = Path(file).expanduser()
    if path is None or not path.is_file():
        return None
    try:
        if path.suffix == ".json":
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(path))
            return str(path), lambda text: len(tok.encode(text, add_special_tokens=False).ids)
        if path.suffix == ".model":
            import sentencepiece

            sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
            return str(path), lambda text: len(sp.encode(text))
    except Exception:  # noqa: BLE001 - a broken or unsupported file falls back to the estimate
        return None
    return None


def counter_for(target: T2VTarget) -> Counter:
    budget = target.prompt_budget
    ref = budget.tokenizer
    exact = _exact_tokens(ref.repo, ref.file) if ref is not None and budget.unit == "tokens" else None
    if exact is not None:
        return Counter(budget, f"tokenizer {ref.label}", exact[1])
    return Counter(budget, "words" if budget.unit == "words" else "approx.", approx_tokens)
