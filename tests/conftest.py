"""Shared, session-scoped sample corpora and builds (built once, reused by many tests)."""

from __future__ import annotations

import contextlib
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


def processes_named(fragment: str, parent: int | None = None) -> list[int]:
    """Pids of this machine's other processes whose command line holds ``fragment`` (worker processes
    a test kills: Ray actors are titled ``ray::<Class>``, spawned pool workers run ``spawn_main``),
    only the children of ``parent`` when given."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fragment not in cmdline:
            continue
        if parent is not None:
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid != parent:
                continue
        pids.append(int(entry.name))
    return pids


def kill_one_during(attempts, fragment: str, killed: list[int], done, parent: int | None = None) -> None:
    """SIGKILL one process named ``fragment`` while a clip is in hand (an attempt file exists under
    the folder ``attempts``, or the callable ``attempts`` says so), as the OOM killer would; run in a
    thread until ``done`` is set."""
    import signal
    import time

    in_hand = attempts if callable(attempts) else (lambda: any(attempts.glob("*/*.count")))
    while not done.is_set() and not killed:
        if in_hand():
            for pid in processes_named(fragment, parent)[:1]:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.05)


def copy_corpus(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def copy_cpu_work(src_work: Path, dst_work: Path) -> None:
    """Seed a work dir with finished frames/features so a test pays only for what it checks."""
    for sub in ("stages/frames", "stages/features", "frames"):
        if (src_work / sub).exists():
            shutil.copytree(src_work / sub, dst_work / sub, dirs_exist_ok=True)


# --------------------------------------------------------------------------- tiny training runs

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = REPO / "train" / "configs" / "tiny.yaml"
STAGE1_STEPS = 84  # 12 epochs of the 14 train captions at batch 2
STAGE2_STEPS = 20


class InferenceRuns:
    """Tiny stage-1/stage-2 runs for inference tests (describe, leaderboard), trained on demand.

    Few optimizer steps: these tests check plumbing and provenance, not description quality.
    """

    def __init__(self, root: Path, build: SampleBuild, steps: int = 2):
        from train import make_tiny, sft

        self.root, self.build, self.steps = root, build, steps
        self.config = TINY_YAML
        self.sft = sft
        self.tiny = make_tiny.make_tiny(root / "tiny", build.out, steps=20, quiet=True)
        self.stage1 = self.sft.train(self.config, 1, self._common(output_dir=str(root / "stage1"), max_steps=steps))
        self._stage2: dict[str, Path] = {}

    def _common(self, **extra):
        return {"dataset": str(self.build.out), "audio_root": str(self.build.corpus),
                "language_model": str(self.tiny["llm"]), "audio_encoder_path": str(self.tiny["audio_encoder"]),
                "disable_tqdm": True, **extra}

    def stage2(self, inputs: str = "1+2+3+4") -> Path:
        """The stage-2 run trained on ``inputs`` (trained the first time it is asked for)."""
        if inputs not in self._stage2:
            self._stage2[inputs] = self.sft.train(self.config, 2, self._common(
                output_dir=str(self.root / "stage2-{inputs}"), init_from=str(self.stage1), inputs=inputs,
                max_steps=self.steps))
        return self._stage2[inputs]


@pytest.fixture(scope="session")
def inference_runs(sample_build, tmp_path_factory) -> InferenceRuns:
    return InferenceRuns(tmp_path_factory.mktemp("inference-runs"), sample_build)


class Runs:
    def __init__(self, root, build, tiny):
        self.root, self.build, self.tiny = root, build, tiny
        self.stage1 = self.stage2 = self.model1 = self.model2 = None

    def common(self, **extra):
        return {"dataset": str(self.build.out), "audio_root": str(self.build.corpus),
                "language_model": str(self.tiny["llm"]), "audio_encoder_path": str(self.tiny["audio_encoder"]),
                "disable_tqdm": True, **extra}


@pytest.fixture(scope="session")
def tiny_runs(sample_build, tmp_path_factory) -> Runs:
    """Tiny models (train/make_tiny.py), one stage-1 and one stage-2 run on the sample build."""
    from train import make_tiny, sft

    root = tmp_path_factory.mktemp("train")
    tiny = make_tiny.make_tiny(root / "tiny", sample_build.out, quiet=True)
    runs = Runs(root, sample_build, tiny)
    runs.stage1, runs.model1, _ = sft.train(
        TINY_YAML, 1, runs.common(output_dir=str(root / "stage1"), max_steps=STAGE1_STEPS), return_model=True)
    runs.stage2, runs.model2, _ = sft.train(
        TINY_YAML, 2, runs.common(output_dir=str(root / "stage2-{inputs}"), init_from=str(runs.stage1),
                                  max_steps=STAGE2_STEPS), return_model=True)
    return runs



# --------------------------------------------------------------------------- test backends


class OfflineWrapper:
    """The offline backend behind a test backend that overrides ``run`` (faults, reorderings, broken
    answers): identity, models, prompts and params are the offline backend's own."""

    def __init__(self):
        from builders.llm.offline import OfflineBackend

        self.inner = OfflineBackend()
        self.id = self.inner.id

    def model_for(self, stage):
        return self.inner.model_for(stage)

    def prompt_version(self, stage):
        return self.inner.prompt_version(stage)

    def params(self, stage):
        return self.inner.params(stage)

    def run(self, stage, inputs):
        return self.inner.run(stage, inputs)


class StopAfter:
    """A simulated interruption for the resume tests: checkpoint at ``step``, then stop training."""

    def __new__(cls, step: int):
        from transformers import TrainerCallback

        class _StopAfter(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step >= step:
                    control.should_save = True
                    control.should_training_stop = True

        return _StopAfter()


@contextlib.contextmanager
def fake_llm(monkeypatch, key: str, model, answer):
    """The strict fake OpenAI server with ``model`` answered by ``answer(user_text, body)``; the key in the env."""
    from tests.fake_openai import FakeOpenAI

    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with FakeOpenAI(key, lifetime=60) as server:
        server.register(model, answer)
        yield server
