"""``OfflineBackend``: the six LLM stages answered by the offline writers, labelled as such."""

from __future__ import annotations

from typing import Any, Callable

from builders.llm.offline import visual
from builders.llm.offline.captions import write_music_caption, write_unified_caption
from builders.llm.offline.lyrics import MAX_LYRIC_RUN, limit_lyric_overlap, write_lyrics_understanding
from builders.llm.offline.mv_writer import write_mv_description
from builders.llm.offline.text import Chooser
from builders.stages import Stage, StageInput, StageResult, Usage
from mv4all.schema import (
    FrameCaptions,
    LyricsUnderstanding,
    MusicCaption,
    MVDescription,
    MVTypeTag,
    UnifiedMusicCaption,
)

PROMPT_VERSION = "offline-v1"
TEMPLATE_VERSION = 1
# Per-stage bumps (part of the stage key): mv_description 2 = the paper's length and a closing sentence.
STAGE_TEMPLATE_VERSIONS = {"mv_description": 2}
LABEL = "offline heuristic text, not LLM output"

TEXT_MODEL = "offline-template"
VISION_MODEL = "offline-visual-stats"


class OfflineBackend:
    """Deterministic heuristic backend (no network, no model): see the package docstring."""

    id = "offline"

    def __init__(self, variation_salt: str = "", max_lyric_run: int = MAX_LYRIC_RUN) -> None:
        self.variation_salt = str(variation_salt)
        self.max_lyric_run = int(max_lyric_run)

    # ---------------------------------------------------------------- protocol

    def model_for(self, stage: Stage) -> str:
        return VISION_MODEL if stage.modality == "vision" else TEXT_MODEL

    def prompt_version(self, stage: Stage) -> str:
        return PROMPT_VERSION

    def params(self, stage: Stage) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": self.id,
            "stage": stage.name,
            "template_version": STAGE_TEMPLATE_VERSIONS.get(stage.name, TEMPLATE_VERSION),
            "variation_salt": self.variation_salt,
        }
        if stage.name == "lyrics_understanding":
            out["max_lyric_run"] = self.max_lyric_run
        if stage.modality == "vision":
            out["visual_captioner_version"] = visual.VERSION  # new captions or rules: new cache key
        return out

    def run(self, stage: Stage, inputs: list[StageInput]) -> list[StageResult]:
        handler = self._handlers().get(stage.name)
        if handler is None:
            raise ValueError(f"offline backend has no handler for stage {stage.name!r}")
        results = []
        model = self.model_for(stage)
        for raw in inputs:
            clip_id = getattr(raw, "clip_id", "") or ""
            try:
                inp = stage.restrict(raw)  # read only what the stage may read
                output = handler(inp, Chooser(inp.clip_id, self.variation_salt))
                output = stage.output_model.model_validate(output.model_dump())
                error = None
            except Exception as exc:  # one bad clip never stops the stage
                output, error = None, f"{type(exc).__name__}: {exc}"
            results.append(
                StageResult(
                    clip_id=clip_id,
                    output=output,
                    error=error,
                    model=model,
                    usage=Usage(requests=0, input_tokens=0, output_tokens=0, cost_usd=0.0),
                    notes={"backend": self.id, "label": LABEL, "prompt_version": PROMPT_VERSION},
                )
            )
        return results

    # ---------------------------------------------------------------- stages

    def _handlers(self) -> dict[str, Callable[[StageInput, Chooser], Any]]:
        return {
            "music_caption": self._music_caption,
            "lyrics_understanding": self._lyrics_understanding,
            "frame_captions": self._frame_captions,
            "mv_type": self._mv_type,
            "unified_music_caption": self._unified,
            "mv_description": self._mv_description,
        }

    @staticmethod
    def _need(inp: StageInput, *fields: str) -> None:
        missing = [f for f in fields if getattr(inp, f) is None]
        if missing:
            raise ValueError(f"missing input: {', '.join(missing)}")

    def _music_caption(self, inp: StageInput, choose: Chooser) -> MusicCaption:
        self._need(inp, "music_features")
        return MusicCaption(caption=write_music_caption(inp.music_features, inp.track, choose))  # type: ignore[arg-type]

    def _lyrics_understanding(self, inp: StageInput, choose: Chooser) -> LyricsUnderstanding:
        lyrics = inp.lyrics or ""
        if not lyrics.strip() or (inp.track is not None and inp.track.instrumental):
            return LyricsUnderstanding(text="")
        text = write_lyrics_understanding(lyrics, inp.track, choose)
        return LyricsUnderstanding(text=limit_lyric_overlap(text, lyrics, self.max_lyric_run))

    def _frame_captions(self, inp: StageInput, choose: Chooser) -> FrameCaptions:
        self._need(inp, "visual")
        out = visual.caption_frames(inp.visual)
        return out if isinstance(out, FrameCaptions) else FrameCaptions(captions=list(out))

    def _mv_type(self, inp: StageInput, choose: Chooser) -> MVTypeTag:
        self._need(inp, "visual")
        out = visual.classify_mv_type(inp.visual, captions=inp.frame_captions, track=inp.track)
        return out if isinstance(out, MVTypeTag) else MVTypeTag(mv_type=out)

    def _unified(self, inp: StageInput, choose: Chooser) -> UnifiedMusicCaption:
        self._need(inp, "music_features")
        caption = write_unified_caption(inp.music_features,  # type: ignore[arg-type]
                                        inp.track, inp.music_caption, inp.lyrics_understanding, choose)
        return UnifiedMusicCaption(caption=caption)

    def _mv_description(self, inp: StageInput, choose: Chooser) -> MVDescription:
        self._need(inp, "music_features", "frame_captions")
        if not inp.frame_captions:
            raise ValueError("no frame captions to describe")
        return write_mv_description(inp, choose)  # builders.checks checks that the target round-trips
