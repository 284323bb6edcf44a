"""Chat-completions requests for the six LLM stages, and how their answers are read and checked.

One function turns (stage, input, options) into request bodies, and the online client, the
Batch API writer, the cache key and the cost estimate all read those same bodies, so what is
priced is what is sent and what is cached is what was asked. Bodies carry the strict
``json_schema`` that ``chat.completions.parse`` derives from the Contract v1 model. An answer
must also pass the stage's rules (``builders.checks.check_output``); one that does not is
re-asked with the reason.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from builders import prompts
from builders.checks import InvalidOutput, check_output
from builders.llm import facts
from builders.llm.images import contact_sheet, data_url
from builders.locations import is_url, read_bytes, read_many
from builders.stages import STAGES_BY_NAME, Stage, StageInput
from mv4all.schema import FrameCaption, FrameCaptions

FramesMode = Literal["clip", "frame", "contact"]
DEFAULT_MAX_TOKENS = {
    "music_caption": 400,
    "lyrics_understanding": 400,
    "frame_captions": 2000,
    "mv_type": 50,
    "unified_music_caption": 600,
    "mv_description": 2500,
}


@dataclass(frozen=True)
class RequestOptions:
    """Everything that shapes a request body (and so its cache key and the stage params)."""

    vision_model: str = "gpt-4o-mini"
    text_model: str = "gpt-4o-mini"
    detail: str = "low"
    frames_mode: FramesMode = "clip"
    contact_cell_width: int = 256
    contact_detail: str = "low"
    temperature: float = 0.0
    seed: int = 1234
    max_tokens: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MAX_TOKENS))
    token_param: str = "max_completion_tokens"  # "max_tokens" for servers that predate the new name
    prompt_version: int = prompts.DEFAULT_VERSION

    def model_for(self, stage: Stage) -> str:
        return self.vision_model if stage.modality == "vision" else self.text_model

    def as_params(self, stage: Stage) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model_for(stage),
            "prompt": prompts.load(stage.name, self.prompt_version).version_id,
            "reask_prompt": prompts.load("reask", self.prompt_version).version_id,
            "temperature": self.temperature,
            "seed": self.seed,
            self.token_param: self.max_tokens.get(stage.name, 1000),
        }
        if stage.modality == "vision":
            out.update(frames_mode=self.frames_mode, detail=self.detail)
            if self.frames_mode == "contact":
                out.update(contact_cell_width=self.contact_cell_width, contact_detail=self.contact_detail)
        return out


@dataclass
class ChatRequest:
    stage: str
    clip_id: str
    part: int | None  # frame index in per-frame mode, else None
    output_model: type[BaseModel]
    body: dict[str, Any]
    expect: dict[str, Any]  # what an answer is normalised to: {"times": [...]} of the frames it captions
    inp: StageInput | None = None  # what the answer is checked against (the stage's view of the clip)

    @property
    def label(self) -> str:
        return self.clip_id if self.part is None else f"{self.clip_id}#{self.part}"


# ---------------------------------------------------------------------------- strict schema


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The schema OpenAI's strict mode accepts: every object closed, every property required."""
    schema = model.model_json_schema()
    return _strict(schema, schema)


def _strict(node: Any, root: dict) -> Any:
    if not isinstance(node, dict):
        return node
    for defs in ("$defs", "definitions"):
        if isinstance(node.get(defs), dict):
            for name, sub in node[defs].items():
                node[defs][name] = _strict(sub, root)
    if node.get("type") == "object" and "additionalProperties" not in node:
        node["additionalProperties"] = False
    if isinstance(node.get("properties"), dict):
        node["required"] = list(node["properties"])
        node["properties"] = {k: _strict(v, root) for k, v in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        node["items"] = _strict(node["items"], root)
    if isinstance(node.get("anyOf"), list):
        node["anyOf"] = [_strict(v, root) for v in node["anyOf"]]
    if isinstance(node.get("allOf"), list):
        if len(node["allOf"]) == 1:
            node.update(_strict(node.pop("allOf")[0], root))
        else:
            node["allOf"] = [_strict(v, root) for v in node["allOf"]]
    if "default" in node and node["default"] is None:
        node.pop("default")
    ref = node.get("$ref")
    if ref and len(node) > 1:
        target: Any = root
        for key in ref[2:].split("/"):
            target = target[key]
        node.update({**copy.deepcopy(target), **node})
        node.pop("$ref")
        return _strict(node, root)
    return node


def response_format(model: type[BaseModel]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"schema": strict_schema(model), "name": model.__name__,
                                                   "strict": True}}


# ---------------------------------------------------------------------------- building


def build_requests(stage: Stage, inp: StageInput, opts: RequestOptions) -> list[ChatRequest]:
    """The request(s) that answer one clip for one stage (several only in per-frame mode)."""
    inp = stage.restrict(inp)
    tpl = prompts.load(stage.name, opts.prompt_version)
    builder = _BUILDERS[stage.name]
    out = []
    for part, output_model, user, expect in builder(inp, tpl, opts):
        body = {
            "model": opts.model_for(stage),
            "messages": [{"role": "system", "content": tpl.system}, {"role": "user", "content": user}],
            "response_format": response_format(output_model),
            "temperature": opts.temperature,
            "seed": opts.seed,
            opts.token_param: opts.max_tokens.get(stage.name, 1000),
        }
        out.append(ChatRequest(stage=stage.name, clip_id=inp.clip_id, part=part, output_model=output_model,
                               body=body, expect=expect, inp=inp))
    return out


def _frames(inp: StageInput) -> list[bytes]:
    """The clip's frame JPEGs as stored (a work dir on a URL is read in one concurrent fetch)."""
    where = list(inp.frame_images or [])
    if not where:
        raise ValueError("no frames for a vision stage")
    if is_url(where[0]):
        got = read_many(where)
    else:
        got = {loc: data for loc in where if (data := read_bytes(loc)) is not None}
    missing = [loc.replace("\\", "/").rsplit("/", 1)[-1] for loc in where if loc not in got]
    if missing:
        raise ValueError(f"frame files missing: {', '.join(missing[:3])}")
    return [got[loc] for loc in where]


def _times(inp: StageInput, n: int) -> list[float]:
    return facts.frame_times(inp.visual, n)


def _image(jpeg: bytes, detail: str) -> dict:
    return {"type": "image_url", "image_url": {"url": data_url(jpeg), "detail": detail}}


def _frame_parts(jpegs: list[bytes], times: list[float], detail: str) -> list[dict]:
    parts: list[dict] = []
    for i, (jpeg, t) in enumerate(zip(jpegs, times), start=1):
        parts.append({"type": "text", "text": f"Frame {i} (t={t:.1f}s)"})
        parts.append(_image(jpeg, detail))
    return parts


def _sheet(paths: list[bytes], opts: RequestOptions):
    # Low detail means the model sees the sheet inside 512 x 512: draw it at that size.
    return contact_sheet(paths, opts.contact_cell_width, max_side=512 if opts.contact_detail == "low" else None)


def _times_text(times: list[float]) -> str:
    return ", ".join(f"{t:.1f}" for t in times)


def _music_caption(inp, tpl, opts):
    user = tpl.user_text(track=facts.track_block(inp.track, names=False), music=facts.music_block(inp.music_features))
    yield None, _model("music_caption"), user, {}


def _lyrics_understanding(inp, tpl, opts):
    track = facts.track_block(inp.track)
    lyrics = inp.lyrics or ""
    block = facts.fence(lyrics if lyrics.strip() else "(no lyrics: instrumental)")
    yield None, _model("lyrics_understanding"), tpl.user_text(track=track, lyrics=block), {}


def _frame_captions(inp, tpl, opts):
    paths = _frames(inp)
    n = len(paths)
    times = _times(inp, n)
    expect = {"times": times}
    if opts.frames_mode == "frame":
        for i, (jpeg, t) in enumerate(zip(paths, times)):
            text = tpl.user_text(request=tpl.part("frame", index=str(i + 1), count=str(n), t=f"{t:.1f}"),
                                 count="1", times=f"{t:.1f}")
            user = [{"type": "text", "text": text}, _image(jpeg, opts.detail)]
            yield i, FrameCaption, user, {"times": [t]}
        return
    if opts.frames_mode == "contact":
        sheet, layout = _sheet(paths, opts)
        request = tpl.part("contact", count=str(n), cols=str(layout.cols), rows=str(layout.rows))
        user = [{"type": "text", "text": tpl.user_text(request=request, count=str(n), times=_times_text(times))},
                _image(sheet, opts.contact_detail)]
        yield None, FrameCaptions, user, expect
        return
    request = tpl.part("clip", count=str(n))
    user = [{"type": "text", "text": tpl.user_text(request=request, count=str(n), times=_times_text(times))}]
    yield None, FrameCaptions, user + _frame_parts(paths, times, opts.detail), expect


def _mv_type(inp, tpl, opts):
    paths = _frames(inp)
    n = len(paths)
    times = _times(inp, n)
    timeline = facts.frame_timeline(inp.visual, inp.frame_captions, None)
    fields = dict(track=facts.track_block(inp.track), visual=facts.visual_block(inp.visual), timeline=timeline)
    if opts.frames_mode == "contact":
        sheet, layout = _sheet(paths, opts)
        note = tpl.part("contact", count=str(n), cols=str(layout.cols), rows=str(layout.rows))
        images = [_image(sheet, opts.contact_detail)]
    else:  # per-frame mode has no per-frame answer here: one tag per clip, all frames attached
        note = tpl.part("clip", count=str(n))
        images = _frame_parts(paths, times, opts.detail)
    user = [{"type": "text", "text": tpl.user_text(images_note=note, **fields)}] + images
    yield None, _model("mv_type"), user, {}


def _unified(inp, tpl, opts):
    user = tpl.user_text(
        track=facts.track_block(inp.track, names=False), music_caption=inp.music_caption or "(none)",
        music=facts.music_block(inp.music_features),
        lyrics_understanding=facts.fence(inp.lyrics_understanding or "(none)"),
    )
    yield None, _model("unified_music_caption"), user, {}


def _mv_description(inp, tpl, opts):
    n = len(inp.visual.frames) if inp.visual else len(inp.frame_captions or [])
    if not n:
        raise ValueError("no frames to describe")
    user = tpl.user_text(
        count=str(n), mv_type=inp.mv_type or "unknown", track=facts.track_block(inp.track, names=False),
        unified=inp.unified_music_caption or "(none)", music=facts.music_block(inp.music_features),
        visual=facts.visual_block(inp.visual),
        timeline=facts.frame_timeline(inp.visual, inp.frame_captions, inp.music_features),
        lyrics_understanding=facts.fence(inp.lyrics_understanding or "(none)"),
    )
    yield None, _model("mv_description"), user, {}


def _model(stage: str) -> type[BaseModel]:
    return STAGES_BY_NAME[stage].output_model


_BUILDERS = {
    "music_caption": _music_caption,
    "lyrics_understanding": _lyrics_understanding,
    "frame_captions": _frame_captions,
    "mv_type": _mv_type,
    "unified_music_caption": _unified,
    "mv_description": _mv_description,
}


# ---------------------------------------------------------------------------- answers


class InvalidAnswer(InvalidOutput):
    """An answer that parsed badly or broke a rule; worth re-asking."""


def parse_answer(req: ChatRequest, content: str | None) -> BaseModel:
    if not content:
        raise InvalidAnswer("empty answer")
    try:
        output = req.output_model.model_validate_json(content)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        raise InvalidAnswer(f"does not match the {req.output_model.__name__} schema: "
                            f"{first.get('msg', exc)} at {'/'.join(map(str, first.get('loc', ())))}") from None
    return check_answer(req, output)


def check_answer(req: ChatRequest, output: BaseModel) -> BaseModel:
    """The answer with its frame times set to the frames' own, once it passes the stage's rules
    (``check_output``); a per-frame answer is checked as the one-frame clip it describes."""
    stage = STAGES_BY_NAME[req.stage]
    inp = req.inp or StageInput(clip_id=req.clip_id)
    times = req.expect.get("times")
    if times is not None and req.part is not None:  # one frame's caption
        output = FrameCaption(t=times[0], caption=output.caption)
        clip_output, inp = FrameCaptions(captions=[output]), _one_frame(inp, req.part)
    else:
        if times is not None and len(output.captions) == len(times):
            output = FrameCaptions(captions=[FrameCaption(t=t, caption=c.caption)
                                             for t, c in zip(times, output.captions)])
        clip_output = output
    try:
        check_output(stage, clip_output, inp)
    except InvalidOutput as exc:
        raise InvalidAnswer(str(exc)) from None
    return output


def _one_frame(inp: StageInput, i: int) -> StageInput:
    """The input as the request for frame ``i`` alone saw it."""
    images = inp.frame_images or []
    update: dict[str, Any] = {"frame_images": images[i : i + 1]}
    if inp.visual is not None:
        same = len(inp.visual.frames) == len(images)  # else there are no measured times to align to
        update["visual"] = inp.visual.model_copy(update={"frames": inp.visual.frames[i : i + 1]}) if same else None
    return inp.model_copy(update=update)


def with_reask(req: ChatRequest, bad_content: str | None, problem: str, version: int = 1) -> ChatRequest:
    """The same request plus the rejected answer and why, so the model can correct itself."""
    tpl = prompts.load("reask", version)
    body = copy.copy(req.body)
    messages = list(body["messages"])
    if bad_content:
        messages.append({"role": "assistant", "content": bad_content[:20000]})
    messages.append({"role": "user", "content": tpl.user_text(problem=problem)})
    body["messages"] = messages
    return replace(req, body=body)


def merge_parts(req_outputs: list[tuple[ChatRequest, BaseModel]]) -> BaseModel:
    """Per-frame answers -> one clip answer (only frame captions are split per frame)."""
    if len(req_outputs) == 1 and req_outputs[0][0].part is None:
        return req_outputs[0][1]
    ordered = sorted(req_outputs, key=lambda ro: ro[0].part)
    return FrameCaptions(captions=[out for _, out in ordered])


def json_mode(body: dict[str, Any]) -> dict[str, Any]:
    """Fallback for servers without ``json_schema``: JSON mode, with the schema spelled out in the prompt."""
    fmt = body["response_format"]["json_schema"]
    body = copy.copy(body)
    messages = list(body["messages"])
    note = ("\n\nReply with one JSON object (no prose, no code fences) that validates against this JSON schema:\n"
            + json.dumps(fmt["schema"], separators=(",", ":")))
    messages[0] = {"role": "system", "content": messages[0]["content"] + note}
    body["messages"] = messages
    body["response_format"] = {"type": "json_object"}
    return body
