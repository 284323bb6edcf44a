"""Structure metrics: is a prediction shaped like an MV description, complete, and not looping?

n-gram overlap hardly notices a text that lost its frame list, stopped mid-sentence at the
token limit, or repeats one line until it runs out; these numbers do. All are shares or means
over the predictions, values in 0..1 except the frame counts:

- ``parse_rate``: the text parses (``MVDescription.parse``) with an overview AND >= 1
  numbered frame; ``parse_rate_10``: the same with >= 10 frames.
- ``mean_frames``: mean number of frames (a text that does not parse counts its frames all
  the same, usually 0); ``mean_frame_error``: mean |frames - 15|; ``exact_frames_rate``: share
  with exactly 15 (``CLIP_SECONDS / FRAME_STEP_SECONDS``: one beat per sampled frame).
- ``truncation_rate``: share of texts that end mid-sentence. ``MVDescription.render`` ends
  with a closing sentence or a beat's text, both ending in punctuation; so after dropping
  trailing whitespace and bold/italic markers (``**``, ``__``, ``*``, ``_``) the last
  character must be one of ``. ! ? " ' ” ’ ) » …``. A bare heading ("**Overview:**") or a
  beat title without text ("3. **Chorus:**") ends in ":" and counts as truncated, as does an
  empty text.
- ``repetition``: per text, 1 - distinct 4-grams / 4-grams over lowercased word tokens
  (``\\w+``), averaged over texts; a text with fewer than four words counts 0 (it has no
  4-grams to repeat; ``parse_rate`` catches it instead).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Sequence

from mv4all.schema import CLIP_SECONDS, FRAME_STEP_SECONDS, MVDescription

EXPECTED_FRAMES = round(CLIP_SECONDS / FRAME_STEP_SECONDS)  # 15
MIN_FRAMES_FULL = 10
SENTENCE_END = set(".!?\"'”’)»…")
_WORD_RE = re.compile(r"\w+")


def frame_count(text: str) -> tuple[bool, int]:
    """(has an overview, number of numbered frames) as ``MVDescription.parse`` reads ``text``."""
    try:
        mv = MVDescription.parse(text or "")
    except ValueError:  # pydantic's ValidationError is a ValueError
        return False, 0
    return bool(mv.overview.strip()), len(mv.beats)


def is_truncated(text: str) -> bool:
    """True when ``text`` stops mid-sentence (see the module docstring for the rule)."""
    tail = (text or "").rstrip().rstrip("*_").rstrip()
    return not tail or tail[-1] not in SENTENCE_END


def repetition(text: str, n: int = 4) -> float:
    """1 - distinct n-grams / n-grams of the lowercased words; 0.0 for texts shorter than n words."""
    words = _WORD_RE.findall((text or "").lower())
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


@dataclass
class StructureResult:
    n: int
    parse_rate: float
    parse_rate_10: float
    mean_frames: float
    mean_frame_error: float
    exact_frames_rate: float
    truncation_rate: float
    repetition: float
    expected_frames: int = EXPECTED_FRAMES

    def to_dict(self) -> dict:
        return asdict(self)


def structure_metrics(predictions: Sequence[str]) -> StructureResult:
    """Structure metrics of a set of predictions (see the module docstring)."""
    n = len(predictions)
    if not n:
        raise ValueError("structure metrics need at least one prediction")
    parsed = [frame_count(p) for p in predictions]
    frames = [k for _, k in parsed]
    return StructureResult(
        n=n,
        parse_rate=sum(ov and k >= 1 for ov, k in parsed) / n,
        parse_rate_10=sum(ov and k >= MIN_FRAMES_FULL for ov, k in parsed) / n,
        mean_frames=sum(frames) / n,
        mean_frame_error=sum(abs(k - EXPECTED_FRAMES) for k in frames) / n,
        exact_frames_rate=sum(k == EXPECTED_FRAMES for k in frames) / n,
        truncation_rate=sum(map(is_truncated, predictions)) / n,
        repetition=sum(map(repetition, predictions)) / n,
    )
