"""The LLM stages of a build, in ``LLM_STAGES`` order: each stage gets the clips that passed
every earlier stage it depends on, sees only the inputs it declares (``Stage.restrict``), and is
handed all of its pending clips at once (``Backend.run``, in ``max_batch`` chunks). An answer is
stored under the digest of the exact input it was made from and checked (``check_output``) both
when it arrives and when it is reused, so a rerun asks again only for what changed or broke."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from builders.checks import check_output
from builders.locations import join
from builders.pipeline.result import failure_reason
from builders.stages import LLM_STAGES, Stage, StageInput, Usage, params_hash
from builders.store import stage_key

if TYPE_CHECKING:
    from builders.pipeline.runner import Pipeline


def run_llm_stages(pipe: Pipeline, corpus, ids, visuals, features, kept, lyrics) -> dict[str, dict[str, Any]]:
    """Every LLM stage over its eligible clips; returns stage -> clip id -> checked output."""
    outputs: dict[str, dict[str, Any]] = {s.name: {} for s in LLM_STAGES}
    pipe.stage_models = {s.name: {} for s in LLM_STAGES}
    pipe.stage_notes = {s.name: {} for s in LLM_STAGES}

    def full_input(cid: str) -> StageInput:
        frames_dir = pipe.frames_dir(cid)
        visual = visuals.get(cid)
        return StageInput(
            clip_id=cid,
            track=corpus.tracks[cid],
            music_features=features.get(cid),
            visual=visual,
            frame_images=[join(frames_dir, f"{i:02d}.jpg") for i in range(len(visual.frames))] if visual else None,
            lyrics=lyrics.get(cid),
            **{s.name: s.handoff(outputs[s.name].get(cid)) for s in LLM_STAGES if s.output_field},
        )

    def eligible(stage: Stage) -> list[str]:
        if "music_caption" in stage.configs:  # needs the audio features only, never the video
            return [c for c in ids if c in features and c not in pipe.caption_failures]
        out = []
        for cid in ids:
            if cid in pipe.failures or cid not in kept or cid not in features or cid not in lyrics:
                continue
            if all(cid in outputs[d] for d in stage.depends_on if d in outputs):
                out.append(cid)
        return out

    with pipe.progress() as progress:
        for stage in LLM_STAGES:
            todo = eligible(stage)
            task = progress.add_task(stage.name, total=len(todo))
            _run_stage(pipe, stage, todo, full_input, outputs, lambda n: progress.advance(task, n))
    return outputs


def _run_stage(pipe: Pipeline, stage: Stage, todo: list[str], full_input: Callable[[str], StageInput],
               outputs: dict, advance: Callable[[int], None]) -> None:
    """One stage: reuse the stored answers that still pass the checks, ask the backend for the rest."""
    backend = pipe.backend
    key, _ = stage_key(stage.name, stage.version, backend.id, backend.params(stage))
    pending: list[StageInput] = []
    digests: dict[str, str] = {}
    for cid in todo:
        inp = stage.restrict(full_input(cid))
        digest = params_hash(inp.model_dump(mode="json", exclude={"frame_images"}))
        digests[cid] = digest
        rec = pipe.store.get(stage.name, key, cid, digest=digest)
        if rec is not None:
            try:
                output = stage.output_model.model_validate(rec.get("output"))
                check_output(stage, output, inp)
            except ValueError as exc:  # stored under other rules or torn: answer again
                pipe.log.write("stale", stage=stage.name, id=cid, reason=str(exc))
                rec = None
        if rec is not None:
            outputs[stage.name][cid] = output
            pipe.stage_models[stage.name][cid] = rec.get("model") or backend.model_for(stage)
            pipe.stage_notes[stage.name][cid] = rec.get("notes") or {}
            pipe.reused[stage.name] += 1
            pipe.log.write("cached", stage=stage.name, id=cid)
            advance(1)
        else:
            pending.append(inp)
    usage = pipe.usage.setdefault(stage.name, Usage())
    chunk = getattr(backend, "max_batch", None) or len(pending) or 1
    for start in range(0, len(pending), chunk):
        part = pending[start : start + chunk]
        wanted = {i.clip_id for i in part}
        t0 = time.perf_counter()
        try:
            results = backend.run(stage, part)
        except Exception as exc:  # noqa: BLE001 - a backend crash fails this chunk, not the build
            results = []
            for cid in sorted(wanted):
                pipe.fail(cid, stage.name, f"backend {backend.id} failed: {failure_reason(exc)}")
            advance(len(part))
            continue
        pipe.stage_seconds[stage.name] += time.perf_counter() - t0
        answered: set[str] = set()
        for res in results:
            cid = res.clip_id
            if cid not in wanted or cid in answered:
                continue  # a stray or duplicate answer (e.g. from an earlier batch)
            answered.add(cid)
            usage.requests += res.usage.requests
            usage.input_tokens += res.usage.input_tokens
            usage.output_tokens += res.usage.output_tokens
            if res.usage.cost_usd is not None:
                usage.cost_usd = (usage.cost_usd or 0.0) + res.usage.cost_usd
            if not res.ok:
                pipe.fail(cid, stage.name, res.error or "no output")
                continue
            try:
                output = res.output if isinstance(res.output, stage.output_model) else \
                    stage.output_model.model_validate(res.output)
                check_output(stage, output, full_input(cid))
            except ValueError as exc:
                pipe.fail(cid, stage.name, f"invalid {stage.name} output: {exc}")
                continue
            model = res.model or backend.model_for(stage)
            if not pipe.dry_run:
                pipe.store.put(stage.name, key, cid, {
                    "ok": True, "output": output.model_dump(mode="json"), "digest": digests[cid],
                    "model": model, "notes": res.notes,
                })
            outputs[stage.name][cid] = output
            pipe.stage_models[stage.name][cid] = model
            pipe.stage_notes[stage.name][cid] = res.notes
            pipe.computed[stage.name] += 1
            pipe.log.write("computed", stage=stage.name, id=cid)
        for cid in sorted(wanted - answered):
            pipe.fail(cid, stage.name, f"backend {backend.id} returned no result")
        advance(len(part))
