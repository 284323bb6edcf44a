"""A work dir on an object store (``--work-dir s3://...``): the stage records, frames and attempt
counters live in the store, each written whole; the dataset is the folder build's, byte for byte; a
killed worker loses nothing; another machine (a fresh scratch folder) resumes without redoing work;
the LLM stages read the frames from the store and send exactly the requests a folder build sends.

The store is a real S3 API: moto's server on this machine, reached by s3fs as a user's bucket is."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

import pytest

from builders import locations
from builders.config import BuildConfig
from builders.pipeline import build
from tests.conftest import copy_corpus, copy_cpu_work, kill_one_during
from tests.fake_openai import FakeOpenAI

pytest.importorskip("s3fs", reason="s3fs is not installed")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")

BUCKET = "mv4all-test"
KEY = "sk-test-work-url-0123456789"


@pytest.fixture(scope="module")
def s3():
    """An S3 endpoint on this machine; the variables are those a user sets for a real bucket, and the
    spawned workers inherit them."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    fs.mkdir(BUCKET)
    yield fs
    server.stop()
    s3fs.S3FileSystem.clear_instance_cache()
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _parquet(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*.parquet"))}


def _remote_files(fs, root: str) -> dict[str, bytes]:
    fs.invalidate_cache()  # other processes wrote there
    return {p[len(root) + 1:]: fs.cat_file(p) for p in fs.find(root)}


def test_work_dir_on_s3_same_dataset_killed_worker_and_resume_elsewhere(s3, mini_corpus, mini_build, tmp_path):
    root = f"{BUCKET}/work-{tmp_path.name}"
    url = f"s3://{root}"
    cfg = BuildConfig(music4all=mini_corpus, out=tmp_path / "out", work_dir=url, scratch_dir=tmp_path / "scratch-a",
                      workers=2)

    # local workers count their attempts on this machine's disk (no round trips to the store for it)
    attempts = tmp_path / "scratch-a" / "stages" / ".attempts" / "features"
    killed: list[int] = []
    done = threading.Event()
    watcher = threading.Thread(target=kill_one_during, args=(attempts, "spawn_main", killed, done, os.getpid()),
                               daemon=True)
    watcher.start()
    try:
        result = build(cfg, progress=False)
    finally:
        done.set()
        watcher.join()
    assert killed, "no worker process was seen working on a features clip"
    assert not [f for f in result.failures if f.kind == "error"]
    assert result.build_id == mini_build.result.build_id
    assert _parquet(cfg.out) == _parquet(mini_build.out) and _parquet(cfg.out)
    for name in ("failures.jsonl", "build_info.json", "README.md"):
        assert (cfg.out / name).read_bytes() == (mini_build.out / name).read_bytes(), name

    # the store holds what a folder work dir holds: the same records and the same frame JPEGs
    remote = _remote_files(s3, root)
    local = {p.relative_to(mini_build.work).as_posix(): p.read_bytes()
             for sub in ("stages", "frames") for p in (mini_build.work / sub).rglob("*") if p.is_file()}
    assert {k: v for k, v in remote.items() if not k.startswith("logs/")} == local
    assert not [k for k in remote if ".attempts" in k or k.endswith(".tmp")]  # nothing left half-done
    logs = [k for k in remote if k.startswith("logs/")]
    assert len(logs) == 1 and all(json.loads(line)["run"] for line in remote[logs[0]].decode().splitlines())
    scratch = tmp_path / "scratch-a"
    assert not list((scratch / "stages").rglob("*.json")) and not (scratch / "frames").exists()
    assert not list(attempts.glob("*/*.count"))

    # a storyboard page of a row shows the frames stored at the URL
    from typer.testing import CliRunner

    from mv4all import storyboard as sb
    from mv4all.cli import app
    from mv4all.data import load_split

    clip = load_split(cfg.out, "mv_description", "test")[0]["id"]
    page = tmp_path / "row.html"
    res = CliRunner().invoke(app, ["storyboard", "--dataset", str(cfg.out), "--id", clip, "--work", url,
                                   "-o", str(page)])
    assert res.exit_code == 0, res.output
    shown = [remote[k] for k in sorted(remote) if k.startswith("frames/") and f"/{clip}/" in k]
    assert shown and page.read_text().count('<img src="data:image/jpeg;base64,') == len(shown)
    assert sb.jpeg_data_uri(shown[0]) in page.read_text()

    # another machine (nothing in its scratch folder) resumes: nothing is computed again
    again = build(BuildConfig(music4all=mini_corpus, out=tmp_path / "out2", work_dir=url,
                              scratch_dir=tmp_path / "scratch-b", workers=2), progress=False)
    assert sum(again.computed.values()) == 0 and sum(again.reused.values()) > 0
    assert again.build_id == result.build_id and _parquet(again.out) == _parquet(cfg.out)


def test_llm_stages_read_frames_from_the_store_and_ask_what_a_folder_build_asks(s3, mini_corpus, mini_build,
                                                                                tmp_path, monkeypatch):
    """A folder build fills the answer cache (on S3); the same build with its work dir on S3 is answered
    from that cache entirely, so every request, frame images included, is the same to the byte."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    corpus = copy_corpus(mini_corpus, tmp_path / "corpus")
    copy_cpu_work(mini_build.work, tmp_path / "work")
    root = f"{BUCKET}/llm-{tmp_path.name}"
    s3.put(str(tmp_path / "work" / "stages"), f"{root}/stages", recursive=True)
    s3.put(str(tmp_path / "work" / "frames"), f"{root}/frames", recursive=True)
    with FakeOpenAI(KEY) as server:
        # the answer cache in the store too: what a cluster's LLM workers on several nodes share
        options = {"base_url": server.url, "cache_dir": f"s3://{root}-cache", "timeout": 5.0, "max_retries": 2,
                   "frames_mode": "clip"}
        first = build(BuildConfig(music4all=corpus, out=tmp_path / "out", work_dir=tmp_path / "work", llm="openai",
                                  llm_options=options), progress=False)
        sent = len(server.chat_bodies)
        assert sent and first.count("mv_description") == 4
        assert any(part.get("type") == "image_url" for body in server.chat_bodies for m in body["messages"]
                   if isinstance(m.get("content"), list) for part in m["content"])
        second = build(BuildConfig(music4all=corpus, out=tmp_path / "out2", work_dir=f"s3://{root}",
                                   scratch_dir=tmp_path / "scratch", llm="openai", llm_options=options),
                       progress=False)
        assert len(server.chat_bodies) == sent  # all answered from the cache: the same requests
    assert sum(second.computed[s] for s in ("frames", "features")) == 0
    assert _parquet(second.out) == _parquet(first.out)
    stored = _remote_files(s3, root)
    cached = _remote_files(s3, f"{root}-cache")
    assert len(cached) == sent and all(json.loads(v)["content"] for v in cached.values())
    assert KEY.encode() not in b"".join([*stored.values(), *cached.values()])


def test_frames_in_a_url_folder_replace_an_earlier_longer_run(tmp_path, mini_corpus):
    import fsspec

    from builders.pipeline.cpu_jobs import run_job

    fs = fsspec.filesystem("memory")
    url = f"memory://mv4all-frames-{tmp_path.name}/frames/k/clip"
    for name in ("14.jpg", "20.jpg", "notes.txt"):
        fs.pipe_file(f"/mv4all-frames-{tmp_path.name}/frames/k/clip/{name}", b"old")
    video = next((mini_corpus / "videos").glob("*.mp4"))
    res = run_job({"stage": "frames", "id": "clip", "video": str(video), "frames_dir": url,
                   "options": BuildConfig(music4all=mini_corpus, out=tmp_path / "o").frames.model_dump()})
    assert res["ok"], res
    names = locations.names_in(url)
    n = len(res["output"]["frames"])
    assert names == sorted([f"{i:02d}.jpg" for i in range(n)] + ["notes.txt"])  # 20.jpg gone, ours kept
    assert locations.read_bytes(f"{url}/14.jpg")[:2] == b"\xff\xd8"


def test_locations_on_folders_object_stores_and_file_urls(tmp_path):
    for root in (str(tmp_path / "dir"), f"memory://mv4all-loc-{tmp_path.name}", (tmp_path / "f").as_uri()):
        target = locations.join(root, "a", "b.json")
        assert locations.read_bytes(target) is None and not locations.exists(target)
        locations.write_bytes(target, b"one")
        locations.write_bytes(target, b"two")
        assert locations.read_bytes(target) == b"two" and locations.exists(target)
        assert locations.names_in(locations.join(root, "a")) == ["b.json"]  # no temp file left beside it
        assert locations.names_in(locations.join(root, "nothing")) == []
        assert locations.read_many([target, locations.join(root, "a", "missing")]) == {target: b"two"} \
            if locations.is_url(root) else True
        locations.remove(target)
        locations.remove(target)  # gone already: fine
        assert locations.read_bytes(target) is None
    for bad in ("..", "a/b", "", "."):
        with pytest.raises(ValueError, match="unsafe name"):
            locations.join("s3://bucket/work", bad)


def test_bad_work_dir_urls_are_refused_before_any_work(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="--work-dir nope://x: Protocol not known"):
        BuildConfig(music4all=tmp_path, out=tmp_path / "o", work_dir="nope://x")
    with pytest.raises(ValidationError, match="--scratch-dir is for a URL --work-dir only"):
        BuildConfig(music4all=tmp_path, out=tmp_path / "o", work_dir=tmp_path / "w", scratch_dir=tmp_path / "s")
    cfg = BuildConfig(music4all=tmp_path, out=tmp_path / "o", work_dir="s3://bucket/work/")
    assert cfg.work_url == "s3://bucket/work/" and cfg.work.parent.name == "scratch"
    assert "work_dir" not in cfg.output_options() and "scratch_dir" not in cfg.output_options()


def test_ray_workers_write_into_the_store_and_the_dataset_goes_to_s3(s3, mini_corpus, mini_build, tmp_path):
    """Nothing on a shared disk but the corpus: work dir and dataset both on S3, CPU stages on Ray
    actors that get the store's credentials from the job's runtime environment and count their
    attempts in the store; one is killed mid-clip and nothing is lost."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    if ray.is_initialized():
        ray.shutdown()
    env = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                      "AWS_ENDPOINT_URL")}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    root = f"{BUCKET}/ray-{tmp_path.name}"
    cfg = BuildConfig(music4all=mini_corpus, out=f"s3://{root}/ds", work_dir=f"s3://{root}/work",
                      scratch_dir=tmp_path / "scratch", engine="ray")
    from builders.pipeline.cpu import cpu_stage_keys

    counting = f"s3://{root}/work/stages/.attempts/features/{cpu_stage_keys(cfg)['features'][0]}"
    killed: list[int] = []
    done = threading.Event()
    watcher = threading.Thread(target=kill_one_during, daemon=True, args=(
        lambda: bool(locations.names_in(counting)), "ray::MapWorker(MapBatches(_CpuWorker", killed, done))
    watcher.start()
    try:
        result = build(cfg, progress=False)
    finally:
        done.set()
        watcher.join()
        ray.shutdown()
    assert killed, "no CPU actor was seen working on a features clip"  # its attempt was counted in the store
    assert not [f for f in result.failures if f.kind == "error"]
    assert result.build_id == mini_build.result.build_id
    published = _remote_files(s3, f"{root}/ds")
    expected = {p.relative_to(mini_build.out).as_posix(): p.read_bytes() for p in mini_build.out.rglob("*")
                if p.is_file() and p.name != ".mv4all.lock"}
    assert published == expected  # the marker that claims the folder too, but not the local lock
    stored = _remote_files(s3, f"{root}/work")
    jpegs = sum(1 for p in (mini_build.work / "frames").rglob("*.jpg"))
    assert len([k for k in stored if k.startswith("frames/")]) == jpegs
    assert not [k for k in stored if ".attempts" in k]  # counted in the store (Ray), and all cleared


@pytest.mark.slow
def test_batch_ledger_in_the_store_lets_another_machine_resume_without_paying_twice(s3, mini_corpus, mini_build,
                                                                                    tmp_path):
    """The Batch API build is killed while its first batch runs; a second machine (another scratch
    folder) with the same --work-dir URL waits for that batch instead of submitting its requests again."""
    import signal
    import subprocess
    import sys
    import time

    from builders.store import read_log

    root = f"{BUCKET}/batch-{tmp_path.name}"
    copy_cpu_work(mini_build.work, tmp_path / "seed")
    s3.put(str(tmp_path / "seed" / "stages"), f"{root}/stages", recursive=True)
    s3.put(str(tmp_path / "seed" / "frames"), f"{root}/frames", recursive=True)
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    with FakeOpenAI(KEY) as server:
        server.hold_batches.set()

        def cmd(machine: str) -> list[str]:
            return [sys.executable, "-m", "mv4all.cli", "build", "--music4all", str(mini_corpus), "--out",
                    str(tmp_path / machine / "out"), "--work-dir", f"s3://{root}", "--scratch-dir",
                    str(tmp_path / machine / "scratch"), "--quiet", "--llm", "openai-batch", "--base-url", server.url,
                    "--cache-dir", str(tmp_path / machine / "cache"), "--poll-interval", "0.05"]

        proc = subprocess.Popen(cmd("a"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not [
                n for n in locations.names_in(f"s3://{root}/llm_batches") if n.startswith("batch_")]:
            time.sleep(0.1)
        time.sleep(0.3)  # it is polling the held batch now
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        first = set(server.batches)
        assert len(first) == 1, "the kill should land while the first stage's batch runs"
        first_keys = {json.loads(line)["custom_id"] for b in first
                      for line in server.files[server.batches[b].input_file_id]["data"].splitlines()}

        server.hold_batches.clear()
        done = subprocess.run(cmd("b"), env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        later = set(server.batches) - first
        later_keys = {json.loads(line)["custom_id"] for b in later
                      for line in server.files[server.batches[b].input_file_id]["data"].splitlines()}
        assert later and not (later_keys & first_keys)  # resumed, not resubmitted
    log = read_log(tmp_path / "b" / "scratch")
    assert any(e["event"] == "batch_resumed" for e in log)
    assert (tmp_path / "b" / "out" / "build_info.json").is_file()
    stored = _remote_files(s3, root)
    assert KEY.encode() not in b"".join(stored.values())


def test_an_unreachable_store_stops_the_build_instead_of_failing_clips_for_good(tmp_path, mini_corpus, monkeypatch):
    """A storage outage is not the clip's fault: no failure record is kept for it (a rerun computes it)."""
    from builders.locations import WorkDirUnreachable
    from builders.pipeline import cpu_jobs
    from builders.store import StageStore

    def down(*args, **kwargs):
        raise OSError("connection refused")

    url = f"memory://mv4all-down-{tmp_path.name}"
    video = next((mini_corpus / "videos").glob("*.mp4"))
    monkeypatch.setattr(cpu_jobs, "write_many", down)
    with pytest.raises(WorkDirUnreachable, match="cannot store the frames of clip in the work dir: OSError"):
        cpu_jobs.run_job({"stage": "frames", "id": "clip", "video": str(video), "frames_dir": f"{url}/frames/clip",
                          "options": BuildConfig(music4all=mini_corpus, out=tmp_path / "o").frames.model_dump()})

    store = StageStore(url)
    monkeypatch.setattr("builders.store.write_bytes", down)
    store.put("frames", "k", "clip", {"ok": True})
    with pytest.raises(WorkDirUnreachable, match="cannot store stage records"):
        store.close()


def test_attempts_counted_in_a_store_end_a_clip_that_keeps_killing_workers(tmp_path):
    from builders.pipeline.cpu_jobs import MAX_ATTEMPTS, run_counted

    marker = f"memory://mv4all-attempts-{tmp_path.name}/stages/.attempts/features/k/clip.count"
    job = {"stage": "features", "id": "clip", "audio": str(tmp_path / "missing.mp3"), "track": {},
           "attempts_file": marker}
    locations.write_bytes(marker, str(MAX_ATTEMPTS).encode())  # three workers died on it already
    result = run_counted(job)
    assert not result["ok"] and f"died {MAX_ATTEMPTS} times" in result["error"] and not locations.exists(marker)
    result = run_counted(job)  # an ordinary attempt: counted, then cleared, whatever the outcome
    assert not result["ok"] and "died" not in result["error"] and not locations.exists(marker)
