"""The four input modalities, their ablation combinations, and the one prompt renderer.

Training, evaluation and ``mv4all describe`` all build prompts with ``render_prompt`` so
that an ablation row means the same thing everywhere.

Modalities (paper numbering): ① music audio, ② genre tags, ③ MV type tag,
④ lyrics understanding.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any, Mapping

MV_INSTRUCTION = (
    "Generate a concise video prompt that captures the essence of the MV, incorporating the "
    "music's tone, style, and lyrical themes. The prompt should reflect the specified MV type "
    "and align with the music genre to ensure stylistic coherence for guiding a text-to-video model."
)
CAPTION_INSTRUCTION = "Describe the music in detail."

AUDIO_PLACEHOLDER = "<audio>"

MODALITIES: dict[int, str] = {1: "music", 2: "genres", 3: "mv_type", 4: "lyrics_understanding"}
MODALITY_LABELS: dict[int, str] = {1: "Music", 2: "Genres", 3: "MV type", 4: "Lyrics understanding"}

NONE = "none"
ALL = "1+2+3+4"
# The rows of the paper's Table 1 (plus the inference-time "none").
TABLE1_COMBINATIONS: tuple[str, ...] = ("1+2+3+4", "2+3+4", "1+3+4", "1+2+4", "1+2+3", "2+3", "1+3", "1+4")


@dataclass(frozen=True)
class Combination:
    """A set of modalities, written canonically as "1+2+3+4" or "none"."""

    modalities: frozenset[int]

    @property
    def name(self) -> str:
        return "+".join(str(m) for m in sorted(self.modalities)) or NONE

    @property
    def uses_audio(self) -> bool:
        return 1 in self.modalities

    def __contains__(self, modality: int) -> bool:
        return modality in self.modalities

    def __str__(self) -> str:
        return self.name


def parse_combination(spec: "str | Combination | None") -> Combination:
    """Parse "1+2+3+4", "2,3", "3+1", "none" or "" into a ``Combination``; reject anything else."""
    if isinstance(spec, Combination):
        return spec
    text = (spec or "").strip().lower()
    if text in ("", NONE, "0", "-"):
        return Combination(frozenset())
    parts = [p for p in text.replace(",", "+").replace(" ", "").split("+") if p]
    try:
        mods = frozenset(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"invalid input combination {spec!r}: use modality numbers 1-4 joined by '+', or 'none'")
    bad = sorted(m for m in mods if m not in MODALITIES)
    if bad or len(parts) != len(mods):
        raise ValueError(f"invalid input combination {spec!r}: modalities are 1-4, each at most once")
    return Combination(mods)


def all_combinations(include_none: bool = True) -> list[str]:
    """Every subset of the four modalities, largest first."""
    out = [
        "+".join(map(str, c))
        for size in range(4, 0, -1)
        for c in combinations(sorted(MODALITIES), size)
    ]
    return out + ([NONE] if include_none else [])


def _field(example: Any, name: str) -> Any:
    if isinstance(example, Mapping):
        return example.get(name)
    return getattr(example, name, None)


def render_inputs(example: Any, combination: "str | Combination", audio_tokens: int = 1) -> str:
    """The input block of the prompt: one line per selected modality, in paper order.

    ``example`` is an ``Example``, a dataset row (dict) or any object with the fields
    ``genres``, ``mv_type``, ``lyrics_understanding``. Empty fields are written as "none"
    so that the model sees the same layout for every clip.
    """
    combo = parse_combination(combination)
    lines: list[str] = []
    for modality in sorted(combo.modalities):
        label = MODALITY_LABELS[modality]
        if modality == 1:
            value = AUDIO_PLACEHOLDER * max(1, int(audio_tokens))
        elif modality == 2:
            genres = _field(example, "genres") or []
            value = ", ".join(genres) if genres else "none"
        elif modality == 3:
            value = _field(example, "mv_type") or "none"
        else:
            value = (_field(example, "lyrics_understanding") or "").strip() or "none (instrumental)"
        lines.append(f"{label}: {value}")
    return "".join(line + "\n" for line in lines)


@dataclass(frozen=True)
class Prompt:
    """A prompt split where the loss starts: train on ``target`` only."""

    prefix: str
    target: str

    @property
    def text(self) -> str:
        return self.prefix + self.target


def render_prompt(
    example: Any,
    combination: "str | Combination",
    instruction: str = MV_INSTRUCTION,
    output: str | None = None,
    audio_tokens: int = 1,
) -> Prompt:
    """``{inputs}### Human: {instruction}\\n### Assistant: {output}\\n###`` (NExT-GPT/DeepResonance).

    With ``output=None`` the target is empty and the prefix ends right where generation
    starts. The tokenizer adds ``<s>``.
    """
    prefix = f"{render_inputs(example, combination, audio_tokens)}### Human: {instruction}\n### Assistant: "
    target = "" if output is None else f"{output.strip()}\n###"
    return Prompt(prefix=prefix, target=target)
