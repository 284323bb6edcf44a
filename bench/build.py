"""Build cost per clip: the LLark-style recipe vs our feature stage, local 1 vs 2 workers, Ray vs local,
and a projection for the paper's 56,446 clips. Not a test: numbers depend on the machine.

Measured in one run, on the sample corpus (or ``--corpus``, a Music4All-layout folder with videos/):

1. **Recipe**: the plain LLark-style madmom recipe (``bench/llark_recipe.py``: madmom's processors as
   documented, two networks) vs ``FeatureExtractor`` on the same pre-decoded audio, one thread,
   interleaved clip by clip after a warm-up. Target: our feature stage <= 1.0 s per clip per core.
2. **Local 1 vs 2 workers**: whole offline builds; from the build log, the CPU phase's start-up
   (pool, models, first clip) and its steady wall seconds per clip after that; and the stage seconds
   per clip measured in the workers (frames target <= 0.25 s).
3. **Ray (2 CPUs) vs local 2 workers**: the same build with ``engine="ray"`` on a local Ray; the
   difference in steady seconds per clip is Ray's overhead per clip (scheduling, transfer), the
   difference in start-up its fixed cost. The parquet files must be identical.
4. **Projection**: hours of the CPU stages for 56,446 clips on N nodes of C cores, from the measured
   core-seconds per clip on Ray (LLM stages excluded: their time is the API's rate limit, see
   bench/llm_cost.py).
5. **Frames at 360p and 720p**: the sample corpus's videos are 320x180 at 12 fps; music videos are
   more often 360p-1080p at 25-30 fps, and then decoding every frame (the cuts need them) and the
   face cascade dominate. The frames stage on the same rendered content at 360p and 720p, 30 fps
   (moving texture, a cut every 3 s), and the projection again with each frames cost.
6. **Work dir on S3 vs a folder** (local 2 workers; with ``s3fs`` and ``moto[server]`` installed): the
   same build with ``--work-dir s3://...`` on moto's S3 server on this machine. It measures our
   bookkeeping (listing, uploads, the server's own CPU on these cores), not a real store's latency.

    python bench/build.py [--clips 16] [--corpus DIR] [--no-ray] [--no-s3] [--no-hd] [--json report.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from llark_recipe import llark_features, load_llark_processors  # noqa: E402

from builders.config import BuildConfig  # noqa: E402
from builders.features import FeatureExtractor, limit_threads  # noqa: E402
from builders.pipeline import build  # noqa: E402
from builders.sample.corpus import write_sample_corpus  # noqa: E402
from builders.store import read_log  # noqa: E402
from mv4all.audio import load_audio  # noqa: E402

PAPER_CLIPS = 56_446
CPU_STAGES = ("frames", "features")


def recipe_vs_ours(corpus: Path) -> dict:
    """Seconds per clip of the LLark-style recipe and of our extractor, same audio, interleaved."""
    limit_threads(1)
    procs, ours = load_llark_processors(), FeatureExtractor()
    audios = [load_audio(p, sr=44100) for p in sorted((corpus / "audios").glob("*.mp3"))]
    llark_features(audios[0], procs), ours.extract(audios[0])  # warm-up: lazy imports, ONNX set-up
    spent = {"llark_recipe": 0.0, "ours": 0.0}
    for audio in audios:
        started = time.perf_counter()
        llark_features(audio, procs)
        spent["llark_recipe"] += time.perf_counter() - started
        started = time.perf_counter()
        ours.extract(audio)
        spent["ours"] += time.perf_counter() - started
    per_clip = {k: round(v / len(audios), 4) for k, v in spent.items()}
    return {**{f"{k}_s_per_clip": v for k, v in per_clip.items()},
            "ours_vs_recipe": round(per_clip["ours"] / per_clip["llark_recipe"], 3), "clips": len(audios)}


def cpu_phase(work: Path, clips: int) -> dict:
    """The CPU phase's wall time from the build log: start-up (build start to the first frames/features
    result: pool start, model loading, first clip) and steady seconds per clip after that."""
    events = read_log(work)
    start = next(e["time"] for e in events if e["event"] == "start")
    done = sorted(e["time"] for e in events if e["event"] == "computed" and e.get("stage") in CPU_STAGES)
    if not done:
        return {"cpu_phase_wall_s": 0.0, "startup_s": 0.0, "steady_s_per_clip": 0.0}
    return {"cpu_phase_wall_s": round(done[-1] - start, 2), "startup_s": round(done[0] - start, 2),
            "steady_s_per_clip": round((done[-1] - done[0]) / max(1, clips - 1), 4)}


def timed_build(corpus: Path, root: Path, workers: int, engine: str = "local", work_url: str | None = None) -> dict:
    shutil.rmtree(root, ignore_errors=True)
    where = {"work_dir": work_url, "scratch_dir": root / "scratch"} if work_url else {"work_dir": root / "work"}
    cfg = BuildConfig(music4all=corpus, out=root / "out", workers=workers, engine=engine, **where)
    started = time.perf_counter()
    result = build(cfg, progress=False)
    wall = time.perf_counter() - started
    clips = len(list((corpus / "audios").glob("*.mp3")))
    return {"engine": engine, "workers": workers, "wall_s": round(wall, 2), **cpu_phase(cfg.work, clips),
            "clips_per_min": round(60 * clips / wall, 2),
            "stage_s_per_clip": {s: round(sec / max(1, result.computed[s]), 4)
                                 for s, sec in sorted(result.stage_seconds.items())},
            "build_id": result.build_id, "out": str(cfg.out)}


def parquet_digests(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(Path(out).rglob("*.parquet"))}


def projection(core_s_per_clip: float, nodes=(1, 4, 16), cores=(16, 64)) -> list[dict]:
    """Hours of the CPU stages for the paper's clips on N nodes of C cores, at the measured core-seconds
    per clip (steady state: start-up is paid once per node, minutes against hours)."""
    return [{"nodes": n, "cores_per_node": c, "hours": round(PAPER_CLIPS * core_s_per_clip / (n * c) / 3600, 2)}
            for n in nodes for c in cores]


def render_clip(path: Path, w: int, h: int, seconds: int = 30, fps: int = 30) -> Path:
    """A w x h H.264 clip (x264 medium, CRF 23): a drifting texture, inverted every other shot, a
    cut every 3 s and a moving disc."""
    import av
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    texture = cv2.resize((rng.random((h // 8, w // 8, 3)) * 255).astype(np.uint8), (2 * w, 2 * h),
                         interpolation=cv2.INTER_CUBIC)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "medium", "crf": "23"}
        for i in range(fps * seconds):
            shot = (i // (3 * fps)) % 4
            x, y = (3 * i + 200 * shot) % w, (i + 90 * shot) % h
            img = texture[y:y + h, x:x + w].copy()
            if shot % 2:
                img = 255 - img
            cv2.circle(img, (w // 2 + int(100 * np.sin(i / 10)), h // 2), h // 6, (200, 160, 140), -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frames_hd(tmp: Path, repeats: int = 3) -> dict[str, float]:
    """CPU seconds per clip of the frames stage on the same content rendered at 360p and 720p (30 fps),
    one thread: what the source resolution costs when the analysis runs at 384 px anyway."""
    import cv2

    from builders.video import analyse_video

    limit_threads(1)
    cv2.setNumThreads(1)
    out = {}
    for name, (w, h) in {"360p": (640, 360), "720p": (1280, 720)}.items():
        clip = render_clip(tmp / f"clip{name}.mp4", w, h)
        analyse_video(clip, tmp / f"f{name}-warm")
        started = time.process_time()
        for i in range(repeats):
            analyse_video(clip, tmp / f"f{name}-{i}")
        out[name] = round((time.process_time() - started) / repeats, 4)
    return out


def s3_vs_folder(corpus: Path, tmp: Path, folder: dict) -> dict:
    """The local 2-worker build again with its work dir on an S3 endpoint (moto's server, in its own
    process so that it does not share the driver's interpreter) on this machine."""
    import os
    import socket
    import subprocess

    try:
        import moto.server  # noqa: F401
        import s3fs
    except ImportError:
        return {"s3_work_dir": "skipped: pip install s3fs 'moto[server]'"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir("mv4all-bench")
        on_s3 = timed_build(corpus, tmp / "s3", workers=2, work_url="s3://mv4all-bench/work")
    finally:
        server.terminate()
        server.wait()
    return {"s3_work_dir_2_workers": on_s3,
            "s3_vs_folder_wall": round(on_s3["wall_s"] / max(1e-9, folder["wall_s"]), 3),
            "s3_overhead_steady_s_per_clip": round(on_s3["steady_s_per_clip"] - folder["steady_s_per_clip"], 4),
            "s3_parquet_identical": parquet_digests(Path(on_s3["out"])) == parquet_digests(Path(folder["out"]))
            and on_s3["build_id"] == folder["build_id"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--corpus", type=Path, default=None, help="existing Music4All-layout folder with videos/")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray comparison")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 work dir comparison")
    parser.add_argument("--no-hd", action="store_true", help="skip the frames stage on a 720p clip")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mv4all-bench-"))
    corpus = args.corpus or tmp / "music4all"
    if args.corpus is None:
        write_sample_corpus(corpus, clips=args.clips, workers=2)
    report: dict = {"recipe": recipe_vs_ours(corpus)}
    one = timed_build(corpus, tmp / "w1", workers=1)
    two = timed_build(corpus, tmp / "w2", workers=2)
    cpu_s = sum(one["stage_s_per_clip"].get(s, 0.0) for s in CPU_STAGES)
    speedup = one["steady_s_per_clip"] / max(1e-9, two["steady_s_per_clip"])
    report.update({
        "local_1_worker": one, "local_2_workers": two,
        "cpu_s_per_clip": round(cpu_s, 4),
        "steady_speedup_2_workers": round(speedup, 3),
        "cpu_phase_speedup_2_workers": round(one["cpu_phase_wall_s"] / max(1e-9, two["cpu_phase_wall_s"]), 3),
    })
    core_s_per_clip = 2 * two["steady_s_per_clip"]  # 2 cores busy for each clip's share of the wall
    if not args.no_ray:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            on_ray = timed_build(corpus, tmp / "ray", workers=2, engine="ray")
        finally:
            ray.shutdown()
        core_s_per_clip = 2 * on_ray["steady_s_per_clip"]
        report.update({
            "ray_2_cpus": on_ray,
            "ray_vs_local_2_steady": round(on_ray["steady_s_per_clip"] / max(1e-9, two["steady_s_per_clip"]), 3),
            "ray_overhead_s_per_clip": round(on_ray["steady_s_per_clip"] - two["steady_s_per_clip"], 4),
            "ray_extra_startup_s": round(on_ray["startup_s"] - two["startup_s"], 2),
            "ray_parquet_identical": parquet_digests(Path(on_ray["out"])) == parquet_digests(Path(two["out"]))
            and on_ray["build_id"] == two["build_id"],
        })
    if not args.no_s3:
        report.update(s3_vs_folder(corpus, tmp, two))
    report["core_s_per_clip_projected"] = round(core_s_per_clip, 4)
    report["projection_56446_clips_cpu_stages"] = projection(core_s_per_clip)
    if not args.no_hd:
        hd = frames_hd(tmp)
        sample_frames = two["stage_s_per_clip"].get("frames", 0.0)
        report["frames_s_per_clip_30fps"] = hd
        for name, cost in hd.items():
            report[f"core_s_per_clip_{name}"] = round(core_s_per_clip - sample_frames + cost, 4)
            report[f"projection_56446_clips_cpu_stages_{name}"] = projection(report[f"core_s_per_clip_{name}"])
    report["targets"] = {"features_s_per_clip": "<= 1.0", "frames_s_per_clip": "<= 0.25",
                         "steady_speedup_2_workers": ">= 1.6"}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
