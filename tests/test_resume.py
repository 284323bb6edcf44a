"""Crash safety and incremental rebuilds on the mini corpus (4 clips)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from builders.store import read_log
from tests.conftest import _build, copy_cpu_work


def _tables(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): pq.read_table(p) for p in sorted((out / "data").rglob("*.parquet"))}


def _same_dataset(a: Path, b: Path) -> None:
    ta, tb = _tables(a), _tables(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        assert ta[name].equals(tb[name]), name


@pytest.mark.slow
def test_kill_and_resume(mini_corpus, mini_build, tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    cmd = [sys.executable, "-m", "mv4all.cli", "build", "--music4all", str(mini_corpus), "--out", str(out),
           "--work-dir", str(work), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    features = work / "stages" / "features"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(features.glob("*/*.json"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.stem for p in features.glob("*/*.json")}
    assert 2 <= len(done_before) < 4, "the kill should land mid-build"
    assert not (out / "README.md").exists()

    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    log = read_log(work)
    second_run = log[-1]["run"]
    recomputed = {e["id"] for e in log if e["run"] == second_run and e["event"] == "computed"
                  and e["stage"] == "features"}
    assert not (recomputed & done_before)
    assert recomputed | done_before == {p.stem for p in features.glob("*/*.json")}
    _same_dataset(out, mini_build.out)


def test_rerun_reuses_everything_and_same_build_id(mini_corpus, mini_build, tmp_path):
    copy_cpu_work(mini_build.work, tmp_path / "work")
    again = _build(mini_corpus, tmp_path)
    assert again.result.build_id == mini_build.result.build_id
    assert again.result.computed["features"] == 0 and again.result.computed["frames"] == 0
    _same_dataset(again.out, mini_build.out)
    third = _build(mini_corpus, tmp_path)
    assert sum(third.result.computed.values()) == 0


def test_changing_static_threshold_reruns_only_downstream(mini_corpus, mini_build, tmp_path):
    copy_cpu_work(mini_build.work, tmp_path / "work")
    base = _build(mini_corpus, tmp_path)
    changed = _build(mini_corpus, tmp_path, static={"threshold": 0.8})
    computed = changed.result.computed
    assert computed["frames"] == 0 and computed["features"] == 0 and computed["music_caption"] == 0
    assert computed["static_filter"] == 4
    assert changed.result.build_id != base.result.build_id  # the option is part of the build
