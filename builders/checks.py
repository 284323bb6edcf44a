"""The rules every LLM stage output must pass, whichever backend wrote it.

``check_output(stage, output, inputs)`` is the one home of the rules a schema cannot state.
The pipeline runs it on every answer and records a clip whose output breaks a rule as failed,
with the message as its reason; the OpenAI backends run it on every answer and re-ask the model
with the message, so each message says what is wrong and how to fix it. The offline backend
writes outputs that pass by construction (it trims its lyric summaries to ``MAX_LYRIC_RUN``).

The rules, each keyed on what the ``Stage`` declares rather than on its name:

* one item per sampled frame in the stage's per-frame list (``Stage.per_frame``), each at its
  frame's time when the items carry one;
* no run of more than ``MAX_LYRIC_RUN`` consecutive words of the song's lyrics in a stage that
  reads them (the dataset must not redistribute lyrics);
* no empty text in a field the contract requires (an optional one, with a default, may be
  empty), except the lyric understanding of a song without lyrics;
* an MV type from the ten classes;
* an MV description whose rendered text parses back to itself (it is the training target).
"""

from __future__ import annotations

from typing import Any, Iterator

from pydantic import BaseModel

from builders.llm.facts import frame_times
from builders.stages import Stage, StageInput
from builders.textcheck import longest_shared_run
from mv4all.schema import MV_TYPES, MVDescription, MVTypeTag

MAX_LYRIC_RUN = 8  # at most this many consecutive words of the song's lyrics in any output
TIME_TOLERANCE = 0.05  # seconds a per-frame item's time may be off its frame's (prompts show 0.1 s)


class InvalidOutput(ValueError):
    """An output that breaks a stage rule; the message says which rule and how to fix it."""


def check_output(stage: Stage, output: BaseModel, inputs: StageInput) -> None:
    """Raise ``InvalidOutput`` when ``output`` (an instance of ``stage.output_model``) breaks a
    rule for the clip it answers; ``inputs`` may hold more than the stage reads (it is restricted)."""
    if not isinstance(output, stage.output_model):
        raise InvalidOutput(f"not a {stage.output_model.__name__} but a {type(output).__name__}")
    inp = stage.restrict(inputs)
    _check_frames(stage, output, inp)
    _check_lyrics(stage, output, inp)
    _check_texts(stage, output, inp)
    _check_mv_type(output)
    _check_render(output)


def frame_count(inp: StageInput) -> int | None:
    """How many frames the stage was shown (images), or else how many the clip has; None if unknown."""
    if inp.frame_images:
        return len(inp.frame_images)
    if inp.visual is not None:
        return len(inp.visual.frames)
    if inp.frame_captions:
        return len(inp.frame_captions)
    return None


def has_lyrics(inp: StageInput) -> bool:
    return bool((inp.lyrics or "").strip()) and not (inp.track is not None and inp.track.instrumental)


# --------------------------------------------------------------------------- rules


def _check_frames(stage: Stage, output: BaseModel, inp: StageInput) -> None:
    n = frame_count(inp)
    if stage.per_frame is None or n is None:
        return
    items = getattr(output, stage.per_frame)
    noun = stage.per_frame
    if len(items) != n:
        raise InvalidOutput(f"{len(items)} {noun} for {n} frames; return exactly {n} {noun}")
    if inp.visual is None or len(inp.visual.frames) != n:
        return  # no measured frame times to align to
    for i, (item, t) in enumerate(zip(items, frame_times(inp.visual, n)), start=1):
        at = getattr(item, "t", None)
        if at is not None and abs(at - t) > TIME_TOLERANCE:
            raise InvalidOutput(f"item {i} of {noun} is at t={at:.2f}s but frame {i} is at t={t:.2f}s; "
                                f"give each item its frame's time")


def _check_lyrics(stage: Stage, output: BaseModel, inp: StageInput) -> None:
    if "lyrics" not in stage.reads or not inp.lyrics:
        return
    for _, text, _ in _texts(output):
        shared = longest_shared_run(text, inp.lyrics)
        if shared > MAX_LYRIC_RUN:
            raise InvalidOutput(f"it quotes {shared} consecutive words of the lyrics (at most {MAX_LYRIC_RUN}); "
                                "paraphrase instead")


def _check_texts(stage: Stage, output: BaseModel, inp: StageInput) -> None:
    # A song without lyrics has nothing to understand: its lyric understanding may be empty.
    may_be_empty = stage.output_field if "lyrics" in stage.reads and not has_lyrics(inp) else None
    for path, text, required in _texts(output):
        if required and not text.strip() and path != may_be_empty:
            raise InvalidOutput(f"an empty text field ({path})")


def _check_mv_type(output: BaseModel) -> None:
    if isinstance(output, MVTypeTag) and output.mv_type not in MV_TYPES:
        raise InvalidOutput(f"{output.mv_type!r} is not an MV type; choose one of: {', '.join(MV_TYPES)}")


def _check_render(output: BaseModel) -> None:
    if isinstance(output, MVDescription) and MVDescription.parse(output.render()) != output:
        raise InvalidOutput("the rendered MV description does not parse back to itself; write the overview, "
                            "each beat's title and text, and the closing as plain text on one line each, "
                            "without list numbers")


def _texts(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, str, bool]]:
    """Every text field of an output: its path (``overview``, ``beats[2].title``), its text, and
    whether the contract requires the field (it has no default)."""
    for name, info in type(model).model_fields.items():
        yield from _walk(getattr(model, name), f"{prefix}.{name}" if prefix else name, info.is_required())


def _walk(value: Any, path: str, required: bool) -> Iterator[tuple[str, str, bool]]:
    if isinstance(value, str):
        yield path, value, required
    elif isinstance(value, BaseModel):
        yield from _texts(value, path)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]", required)
