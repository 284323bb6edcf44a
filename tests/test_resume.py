"""Crash safety and incremental rebuilds on the mini corpus (4 clips)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from builders.store import read_log
from tests.conftest import _build, copy_corpus, copy_cpu_work, kill_one_during


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


def _record(work: Path, stage: str, clip: str) -> Path:
    (key,) = list((work / "stages" / stage).iterdir())
    return key / f"{clip}.json"


def test_damaged_stage_records_are_redone(mini_corpus, mini_build, tmp_path):
    shutil.copytree(mini_build.work, tmp_path / "work")
    a, b, c, _ = sorted(p.stem for p in (mini_corpus / "audios").glob("*.mp3"))
    frames = _record(tmp_path / "work", "frames", a)
    frames.write_bytes(frames.read_bytes()[: frames.stat().st_size // 2])  # torn JSON
    _record(tmp_path / "work", "lyrics_understanding", b).write_bytes(b"")  # empty file
    mv_type = _record(tmp_path / "work", "mv_type", c)
    record = json.loads(mv_type.read_text(encoding="utf-8"))
    mv_type.write_text(json.dumps({**record, "output": {"mv_type": "Opera"}}), encoding="utf-8")  # not a type
    again = _build(mini_corpus, tmp_path)
    computed = {stage: n for stage, n in again.result.computed.items() if n}
    assert computed == {"frames": 1, "lyrics_understanding": 1, "mv_type": 1}
    assert again.result.rows == mini_build.result.rows and not again.result.failures


@pytest.mark.parametrize("stage, damage", [
    ("frames", lambda record: []),  # JSON, but not an object
    ("frames", lambda record: {**record, "output": {**record["output"], "width": "wide"}}),  # an older schema
    ("static_filter", lambda record: {k: v for k, v in record.items() if k != "keep"}),
    ("lyrics_understanding", lambda record: {k: v for k, v in record.items() if k != "output"}),
], ids=["frames-not-an-object", "frames-invalid-output", "static-filter-no-decision", "llm-no-output"])
def test_stage_records_of_the_wrong_shape_are_redone(mini_corpus, mini_build, tmp_path, stage, damage):
    shutil.copytree(mini_build.work, tmp_path / "work")
    clip = sorted(p.stem for p in (mini_corpus / "audios").glob("*.mp3"))[0]
    path = _record(tmp_path / "work", stage, clip)
    path.write_text(json.dumps(damage(json.loads(path.read_text(encoding="utf-8")))), encoding="utf-8")
    again = _build(mini_corpus, tmp_path)
    assert again.result.computed[stage] == 1 and again.result.rows == mini_build.result.rows


def test_edited_lyrics_rerun_only_the_stages_that_read_them(mini_corpus, mini_build, tmp_path):
    corpus = copy_corpus(mini_corpus, tmp_path / "m4a")  # copied with their times: nothing else looks changed
    shutil.copytree(mini_build.work, tmp_path / "work")
    clip = sorted(p.stem for p in (corpus / "lyrics").glob("*.txt"))[0]
    (corpus / "lyrics" / f"{clip}.txt").write_text(
        "The tide comes in across the harbour wall\nI watch the fishing boats go out to sea\n\n"
        "Salt in the wind and waves against the pier\nThe lighthouse turns and calls the sailors home\n",
        encoding="utf-8")
    again = _build(corpus, tmp_path)
    computed = {stage: n for stage, n in again.result.computed.items() if n}
    assert computed == {"lyrics_understanding": 1, "unified_music_caption": 1, "mv_description": 1}
    before = {r["id"]: r for split in mini_build.result.rows["mv_description"].values() for r in split}
    after = {r["id"]: r for split in again.result.rows["mv_description"].values() for r in split}
    assert after.keys() == before.keys()
    assert "sea" in after[clip]["lyrics_understanding"] and "sea" not in before[clip]["lyrics_understanding"]
    for key in ("mv_type", "music_caption", "frame_captions"):
        assert after[clip][key] == before[clip][key], key
    assert all(after[i] == {**before[i], "provenance": after[i]["provenance"]} for i in after if i != clip)


def test_a_killed_worker_process_loses_no_clip(mini_corpus, mini_build, tmp_path):
    """The OOM killer takes a local worker mid-clip: the pool is rebuilt, the clip it held is run again
    (alone first, so a clip that kills every worker cannot take others with it), nothing is lost."""
    import threading

    attempts = tmp_path / "work" / "stages" / ".attempts" / "features"
    killed: list[int] = []
    done = threading.Event()
    watcher = threading.Thread(target=kill_one_during, args=(attempts, "spawn_main", killed, done, os.getpid()),
                               daemon=True)
    watcher.start()
    try:
        result = _build(mini_corpus, tmp_path, workers=2).result
    finally:
        done.set()
        watcher.join()
    assert killed, "no worker process was seen working on a features clip"
    assert not [f for f in result.failures if f.kind == "error"]
    assert result.build_id == mini_build.result.build_id
    assert not list(attempts.glob("*/*.count"))
