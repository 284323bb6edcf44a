"""The build configuration: one pydantic record, loadable from YAML, overridable from the CLI."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from builders.locations import check_url
from builders.split import DEFAULT_SALT, SplitSpec
from mv4all.schema import CLIP_SECONDS, FRAME_STEP_SECONDS


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FramesOptions(Options):
    every: float = FRAME_STEP_SECONDS  # seconds between sampled frames (paper: 15 frames over 30 s)
    clip_start: float = 0.0  # where the 30 s clip starts in the video
    clip_seconds: float = CLIP_SECONDS
    motion_gap: float = 0.5  # the second frame for within-shot motion
    max_side: int = 512  # JPEG size kept in the work dir


class StaticOptions(Options):
    threshold: float = 1.0  # static_score below this = still image / slideshow of stills


class FeaturesOptions(Options):
    sample_rate: int = 44100


class SplitOptions(Options):
    test_size: int | None = Field(default=None, ge=0)
    test_ratio: float | None = Field(default=None, ge=0.0, lt=1.0)
    min_test: int = Field(default=4, ge=0)
    by: Literal["song", "artist"] = "song"
    salt: str = DEFAULT_SALT

    @model_validator(mode="after")
    def _one_of(self):
        if self.test_size is not None and self.test_ratio is not None:
            raise ValueError("give either split.test_size or split.test_ratio, not both")
        return self

    def spec(self) -> SplitSpec:
        return SplitSpec(test_ratio=self.test_ratio, test_size=self.test_size,
                         min_test=self.min_test, by=self.by, salt=self.salt)


# LLM options that change how requests travel, not what they ask: kept out of build_info/build_id.
OPERATIONAL_LLM_OPTIONS = frozenset({
    "cache_dir", "cache", "concurrency", "rpm", "tpm", "rate_window", "timeout", "max_retries", "backoff",
    "max_backoff", "chunk", "poll_interval", "max_wait", "max_file_requests", "max_file_bytes", "keep_files",
    "state_dir", "api_key_env", "max_reasks",
})


class BuildConfig(Options):
    music4all: Path
    videos: Path | None = None  # default: MUSIC4ALL/videos when it exists
    # a folder, or an fsspec URL (s3://, gs://, file://...) the finished dataset is uploaded to
    out: str | Path = Field(union_mode="left_to_right")
    # a folder (default: OUT.work, a sibling never uploaded), or an fsspec URL every worker can reach
    work_dir: str | Path | None = Field(default=None, union_mode="left_to_right")
    scratch_dir: Path | None = None  # with a URL work dir: this machine's log and dataset copy [~/.cache]
    llm: str = "offline"
    llm_options: dict[str, Any] = Field(default_factory=dict)
    workers: int = 1  # local: worker processes; ray: at most this many actors (1: one per CPU of the cluster)
    engine: Literal["local", "ray"] = "local"  # where per-clip work runs (never changes what is built)
    ray_address: str | None = None  # ray: "auto", "ray://HOST:PORT"; none starts a local Ray
    overwrite: bool = False  # claim a non-empty --out that is not an mv4all dataset (never deletes its files)
    ids: list[str] | None = None  # build only these clips
    limit: int | None = None  # build only the first N clips
    frames: FramesOptions = Field(default_factory=FramesOptions)
    static: StaticOptions = Field(default_factory=StaticOptions)
    features: FeaturesOptions = Field(default_factory=FeaturesOptions)
    split: SplitOptions = Field(default_factory=SplitOptions)

    @field_validator("out", "work_dir", mode="before")
    @classmethod
    def _path_or_url(cls, value: Any) -> Any:
        if value is None:
            return None
        text = str(value)
        return text if "://" in text else Path(value)

    @model_validator(mode="after")
    def _consistent(self):
        if self.ray_address and self.engine != "ray":
            raise ValueError(f"--ray-address {self.ray_address} needs --engine ray")
        if self.out_url and self.work_dir is None:
            raise ValueError(f"--out {self.out} is a URL: give --work-dir, a folder or a URL for the stage "
                             "results (the dataset is written in the work dir first, then uploaded)")
        for what, url in (("--out", self.out_url), ("--work-dir", self.work_url)):
            if url:
                check_url(url, what)
        if self.scratch_dir is not None and not self.work_url:
            raise ValueError("--scratch-dir is for a URL --work-dir only (a folder work dir holds everything)")
        return self

    @property
    def out_url(self) -> str | None:
        """The fsspec URL the dataset is uploaded to, or None for a local ``--out``."""
        return self.out if isinstance(self.out, str) else None

    @property
    def work_url(self) -> str | None:
        """The fsspec URL of the work dir, or None for a folder."""
        return self.work_dir if isinstance(self.work_dir, str) else None

    @property
    def out_dir(self) -> Path:
        """Where the dataset folder is written: ``--out``, or for a URL its copy in the (local) work folder."""
        return self.work / "dataset" if self.out_url else Path(self.out)

    @property
    def videos_dir(self) -> Path:
        return Path(self.videos) if self.videos else Path(self.music4all) / "videos"

    @property
    def work(self) -> Path:
        """The build's local folder: the work dir itself, or for a URL work dir this machine's scratch
        folder (build log, the dataset's copy before upload, the Batch API ledger)."""
        if self.work_url:
            if self.scratch_dir is not None:
                return Path(self.scratch_dir)
            tag = hashlib.sha256(self.work_url.rstrip("/").encode()).hexdigest()[:16]
            return Path(os.path.expanduser("~/.cache/mv4all/scratch")) / tag
        return Path(self.work_dir) if self.work_dir else Path(str(Path(self.out)) + ".work")

    @property
    def work_root(self) -> str:
        """Where stage records and frames live: the work dir's URL, or its folder."""
        return self.work_url or str(self.work)

    def output_options(self) -> dict[str, Any]:
        """Options that change the dataset (not paths, not workers or engine): recorded in build_info."""
        paths_and_runtime = {"music4all", "videos", "out", "work_dir", "scratch_dir", "workers", "overwrite", "engine",
                             "ray_address"}
        out = self.model_dump(mode="json", exclude=paths_and_runtime)
        out["llm_options"] = {k: v for k, v in out["llm_options"].items() if k not in OPERATIONAL_LLM_OPTIONS}
        return out


def load_config(path: Path | None, **overrides: Any) -> BuildConfig:
    """YAML file (optional) + CLI overrides (None means "not given")."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        data.update(loaded)
    for key, value in overrides.items():
        if value is None:
            continue
        if "." in key:
            section, field = key.split(".", 1)
            data.setdefault(section, {})[field] = value
        else:
            data[key] = value
    return BuildConfig.model_validate(data)
