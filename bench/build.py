"""Build throughput: per-stage seconds per clip and clips/minute, workers 1 vs 2.

Baseline, measured in the same run: the raw feature computation (madmom processors loaded
once, audio pre-decoded, one warm-up clip). Targets: feature stage <= 1.3x raw, and
>= 1.6x clips/minute with 2 workers. Not a test: numbers depend on the machine.

    python bench/build.py [--clips 8] [--corpus DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from builders.config import BuildConfig
from builders.features import FeatureExtractor, limit_threads
from builders.pipeline import build
from builders.sample.corpus import write_sample_corpus
from mv4all.audio import load_audio


def raw_feature_seconds(corpus: Path) -> float:
    limit_threads()
    extractor = FeatureExtractor()
    audios = [load_audio(p, sr=44100) for p in sorted((corpus / "audios").glob("*.mp3"))]
    extractor.extract(audios[0])  # warm-up
    started = time.perf_counter()
    for audio in audios:
        extractor.extract(audio)
    return (time.perf_counter() - started) / len(audios)


def timed_build(corpus: Path, root: Path, workers: int) -> dict:
    shutil.rmtree(root, ignore_errors=True)
    cfg = BuildConfig(music4all=corpus, out=root / "out", work_dir=root / "work", workers=workers)
    started = time.perf_counter()
    result = build(cfg, progress=False)
    wall = time.perf_counter() - started
    clips = len(list((corpus / "audios").glob("*.mp3")))
    per_stage = {s: round(sec / max(1, result.computed[s]), 4) for s, sec in sorted(result.stage_seconds.items())}
    return {"workers": workers, "wall_s": round(wall, 2), "clips_per_min": round(60 * clips / wall, 2),
            "stage_s_per_clip": per_stage}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--corpus", type=Path, default=None, help="existing Music4All-layout folder with videos/")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mv4all-bench-"))
    corpus = args.corpus or tmp / "music4all"
    if args.corpus is None:
        write_sample_corpus(corpus, clips=args.clips, workers=2)
    raw = raw_feature_seconds(corpus)
    one = timed_build(corpus, tmp / "w1", workers=1)
    two = timed_build(corpus, tmp / "w2", workers=2)
    report = {
        "raw_features_s_per_clip": round(raw, 4),
        "workers_1": one,
        "workers_2": two,
        "feature_stage_vs_raw": round(one["stage_s_per_clip"]["features"] / raw, 3),
        "speedup_2_workers": round(two["clips_per_min"] / one["clips_per_min"], 3),
        "targets": {"feature_stage_vs_raw": "<= 1.3", "speedup_2_workers": ">= 1.6"},
    }
    print(json.dumps(report, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
