"""Shared, session-scoped sample corpora and builds (built once, reused by many tests)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MINI_CLIPS = 4


@dataclass
class SampleBuild:
    corpus: Path
    out: Path
    work: Path
    result: object  # builders.pipeline.BuildResult

    @property
    def ground_truth(self) -> list[dict]:
        lines = (self.corpus / "ground_truth.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def stage_outputs(self, stage: str) -> dict[str, dict]:
        """Every stored result of a stage in the work dir (all clips, kept or dropped)."""
        out = {}
        for path in sorted((self.work / "stages" / stage).glob("*/*.json")):
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("ok", True):
                out[path.stem] = record.get("output", record)
        return out


def _build(corpus: Path, root: Path, **options):
    from builders.config import BuildConfig
    from builders.pipeline import build

    cfg = BuildConfig(music4all=corpus, out=root / "out", work_dir=root / "work", **options)
    return SampleBuild(corpus=corpus, out=cfg.out, work=cfg.work, result=build(cfg, progress=False))


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory) -> Path:
    from builders.sample.corpus import write_sample_corpus

    path = tmp_path_factory.mktemp("corpus") / "music4all"
    write_sample_corpus(path, clips=18, seed=0, workers=2)
    return path


@pytest.fixture(scope="session")
def sample_build(sample_corpus, tmp_path_factory) -> SampleBuild:
    """The default 18-clip corpus built offline with 2 workers."""
    return _build(sample_corpus, tmp_path_factory.mktemp("build"), workers=2)


@pytest.fixture(scope="session")
def mini_corpus(tmp_path_factory) -> Path:
    from builders.sample.corpus import write_sample_corpus

    path = tmp_path_factory.mktemp("mini") / "music4all"
    write_sample_corpus(path, clips=MINI_CLIPS, seed=7)
    return path


@pytest.fixture(scope="session")
def mini_build(mini_corpus, tmp_path_factory) -> SampleBuild:
    return _build(mini_corpus, tmp_path_factory.mktemp("mini-build"))


def copy_corpus(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def copy_cpu_work(src_work: Path, dst_work: Path) -> None:
    """Seed a work dir with finished frames/features so a test pays only for what it checks."""
    for sub in ("stages/frames", "stages/features", "frames"):
        if (src_work / sub).exists():
            shutil.copytree(src_work / sub, dst_work / sub, dirs_exist_ok=True)
