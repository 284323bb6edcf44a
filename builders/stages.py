"""The LLM stages of the build, their per-clip inputs and results, and the interface every backend implements.

A ``Stage`` says what it may read (fields of ``StageInput``) and what it returns (a
Contract v1 output model). A backend answers a whole stage at once:
``run(stage, inputs) -> list[StageResult]``, one result per input, in any order, so a
Batch-API backend can submit a stage in one go and collect it after a restart.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from builders.video.records import VisualStats
from mv4all.schema import (
    FrameCaption,
    FrameCaptions,
    LyricsUnderstanding,
    MusicCaption,
    MusicFeatures,
    MVDescription,
    MVType,
    MVTypeTag,
    Record,
    Track,
    UnifiedMusicCaption,
)

# --------------------------------------------------------------------------- stage I/O


class StageInput(Record):
    """The measured facts one LLM stage may read for one clip.

    Each stage declares the fields it reads (``Stage.reads``); the
    pipeline fills only those, so a stage cannot peek at what it must not use.
    """

    clip_id: str
    track: Track | None = None
    music_features: MusicFeatures | None = None
    visual: VisualStats | None = None
    frame_images: list[str] | None = None  # JPEGs in the work dir (paths or URLs), one per frame
    lyrics: str | None = None
    music_caption: str | None = None
    lyrics_understanding: str | None = None
    frame_captions: list[FrameCaption] | None = None
    mv_type: MVType | None = None
    unified_music_caption: str | None = None


class Usage(Record):
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None


class StageResult(BaseModel):
    """One clip's answer from a backend: an output of the stage's model, or a failure."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    clip_id: str
    output: Any = None  # instance of the stage's output model when ok
    error: str | None = None
    model: str | None = None
    usage: Usage = Field(default_factory=Usage)
    notes: dict[str, str] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.output is not None


@dataclass(frozen=True)
class Stage:
    name: str
    version: int
    output_model: type[BaseModel]
    reads: frozenset[str]
    depends_on: tuple[str, ...]  # upstream stages whose outputs or decisions it uses
    modality: str  # "text" or "vision": which model a backend should use
    # The output field later stages read, as ``StageInput.<name>``; None when no stage reads it.
    output_field: str | None
    # The output's list with one item per sampled frame (``builders.checks`` counts it), if any.
    per_frame: str | None = None
    # Dataset configs whose rows carry this output. A stage of the music_caption config runs
    # on every clip with audio features; the others only on clips that kept their video.
    configs: tuple[str, ...] = ("mv_description",)

    def restrict(self, full: StageInput) -> StageInput:
        """Keep only the fields this stage may read."""
        keep = {"clip_id"} | set(self.reads)
        return StageInput(**{k: v for k, v in full if k in keep})

    def handoff(self, output: BaseModel | None) -> Any:
        """What later stages read of ``output`` (``StageInput.<name>``); None without an output."""
        if output is None or self.output_field is None:
            return None
        return getattr(output, self.output_field)


FRAME_CAPTIONS = Stage(
    name="frame_captions",
    version=1,
    output_model=FrameCaptions,
    reads=frozenset({"visual", "frame_images"}),
    depends_on=("frames",),
    modality="vision",
    output_field="captions",
    per_frame="captions",
)
MV_TYPE = Stage(
    name="mv_type",
    version=1,
    output_model=MVTypeTag,
    reads=frozenset({"visual", "frame_images", "frame_captions", "track"}),
    depends_on=("frames", "static_filter", "frame_captions"),
    modality="vision",
    output_field="mv_type",
)
# Stage-1 target: music facts and metadata only, never frames or lyrics.
MUSIC_CAPTION = Stage(
    name="music_caption",
    version=1,
    output_model=MusicCaption,
    reads=frozenset({"track", "music_features"}),
    depends_on=("features",),
    modality="text",
    output_field="caption",
    configs=("music_caption", "mv_description"),
)
LYRICS_UNDERSTANDING = Stage(
    name="lyrics_understanding",
    version=1,
    output_model=LyricsUnderstanding,
    reads=frozenset({"track", "lyrics"}),
    depends_on=("ingest",),
    modality="text",
    output_field="text",
)
UNIFIED_MUSIC_CAPTION = Stage(
    name="unified_music_caption",
    version=1,
    output_model=UnifiedMusicCaption,
    reads=frozenset({"track", "music_features", "music_caption", "lyrics_understanding"}),
    depends_on=("features", "music_caption", "lyrics_understanding"),
    modality="text",
    output_field="caption",
)
MV_DESCRIPTION = Stage(
    name="mv_description",
    version=1,
    output_model=MVDescription,
    reads=frozenset(
        {"track", "music_features", "visual", "frame_captions",
         "mv_type", "lyrics_understanding", "unified_music_caption"}
    ),
    depends_on=("frame_captions", "mv_type", "unified_music_caption", "lyrics_understanding"),
    modality="text",
    output_field=None,
    per_frame="beats",
)

LLM_STAGES: tuple[Stage, ...] = (
    MUSIC_CAPTION,
    LYRICS_UNDERSTANDING,
    FRAME_CAPTIONS,
    MV_TYPE,
    UNIFIED_MUSIC_CAPTION,
    MV_DESCRIPTION,
)
STAGES_BY_NAME = {s.name: s for s in LLM_STAGES}

# Stages that look at the video (frames or what was measured on them).
VIDEO_STAGES = frozenset(s.name for s in LLM_STAGES if s.reads & {"visual", "frame_images"})


@runtime_checkable
class Backend(Protocol):
    """An LLM backend. ``id`` names it in provenance ("offline", "openai", "openai-batch")."""

    id: str

    def model_for(self, stage: Stage) -> str:
        """The model that answers this stage (provenance)."""

    def prompt_version(self, stage: Stage) -> str:
        """Version of the prompt/template that this backend uses for the stage."""

    def params(self, stage: Stage) -> dict[str, Any]:
        """Every option that changes this stage's output; hashed into the stage key."""

    def run(self, stage: Stage, inputs: list[StageInput]) -> list[StageResult]:
        """Answer every input; results may come in any order; a failure carries its reason."""


def params_hash(params: dict[str, Any]) -> str:
    """Stable short hash of a JSON-able parameter dict."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
