"""`mv4all describe` speed on the tiny model: cold start, warm seconds per song, batch 1 vs batch 8.

Cold start is a fresh `mv4all describe song.mp3 --model RUN` process, end to end (Python and
torch imports, model assembly, decoding, generation): what a user waits for. Warm is one more
song through an already loaded ``Describer`` (decode + window + features + generate). The batch
figures generate the same clips through ``Describer.generate`` at batch size 1 and 8, audio
features prepared beforehand so that only generation is timed (end-to-end figures, features
included, are reported too). Target: >= 3x clips/s at batch 8.

Without --run, a tiny setup is made first in --work (sample corpus, offline build, tiny models,
a few training steps): about a minute. Not a test: numbers depend on the machine.

    python bench/describe.py [--run RUN --dataset DIR --audio-root DIR] [--clips 16] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


def make_tiny_run(work: Path, steps: int = 10) -> tuple[Path, Path, Path]:
    """(stage-2 run, dataset, audio root) on the 18-clip sample corpus."""
    from builders.config import BuildConfig
    from builders.pipeline import build
    from builders.sample.corpus import write_sample_corpus
    from train import make_tiny, sft

    corpus, out = work / "music4all", work / "dataset"
    if not (corpus / "ground_truth.jsonl").is_file():
        write_sample_corpus(corpus, clips=18, seed=0, workers=2)
    if not out.is_dir():
        build(BuildConfig(music4all=corpus, out=out, work_dir=work / "work", workers=2), progress=False)
    tiny = make_tiny.make_tiny(work / "tiny-models", out, steps=100, quiet=True)
    config = REPO / "train" / "configs" / "tiny.yaml"
    common = {"dataset": str(out), "audio_root": str(corpus), "language_model": str(tiny["llm"]),
              "audio_encoder_path": str(tiny["audio_encoder"]), "max_steps": steps, "disable_tqdm": True}
    stage1 = sft.train(config, 1, {**common, "output_dir": str(work / "runs" / "stage1")})
    stage2 = sft.train(config, 2, {**common, "init_from": str(stage1),
                                   "output_dir": str(work / "runs" / "stage2-{inputs}")})
    return stage2, out, corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="stage-2 run directory [make a tiny one]")
    parser.add_argument("--dataset", type=Path, help="built dataset (with --run)")
    parser.add_argument("--audio-root", type=Path, help="Music4All folder (with --run)")
    parser.add_argument("--work", type=Path, help="where to make the tiny setup [a temporary folder]")
    parser.add_argument("--clips", type=int, default=16, help="clips for the batch comparison")
    parser.add_argument("--songs", type=int, default=3, help="songs for the warm figure")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared CPU)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    tmp = None
    if args.run is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-describe-")
        work = args.work or Path(tmp.name)
        t0 = time.perf_counter()
        args.run, args.dataset, args.audio_root = make_tiny_run(work)
        print(f"tiny setup made in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    from mv4all.describe import Decoding, Describer, load_split
    from mv4all.model.embedding_cache import AudioFeatureReader

    rows = load_split(args.dataset, "train") + load_split(args.dataset, "test")
    songs = [args.audio_root / r["audio"] for r in rows[: args.songs]]

    # Cold start: a fresh process, as a user runs it.
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, "-m", "mv4all.cli", "describe", str(songs[0]), "--model", str(args.run),
           "--max-new-tokens", str(args.max_new_tokens)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    cold = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"cold-start run failed:\n{proc.stderr[-2000:]}")

    t0 = time.perf_counter()
    describer = Describer.from_run(args.run, decoding=Decoding(max_new_tokens=args.max_new_tokens), device="cpu")
    load = time.perf_counter() - t0
    describer.describe(songs[0])  # first call pays one-off costs (kernels, caches)
    t0 = time.perf_counter()
    for song in songs:
        describer.describe(song)
    warm = (time.perf_counter() - t0) / len(songs)

    reader = AudioFeatureReader.for_model(describer.base, args.audio_root)
    clips = [dict(rows[i % len(rows)], id=f"{rows[i % len(rows)]['id']}-{i}") for i in range(args.clips)]
    t0 = time.perf_counter()
    for r in clips:
        r["input_features"] = reader(r)
    features_s = time.perf_counter() - t0
    figures = {"device": "cpu", "threads": args.threads, "max_new_tokens": args.max_new_tokens, "clips": args.clips,
               "cold_start_s": round(cold, 2), "model_load_s": round(load, 2), "warm_s_per_song": round(warm, 3),
               "features_s_per_clip": round(features_s / len(clips), 4)}
    texts = {}
    for batch in (1, 8):
        d = Describer(describer.model, describer.tokenizer, describer.run_info,
                      decoding=describer.decoding.replace(batch_size=batch))
        d.generate(clips[:batch])  # warm-up at this shape
        t0 = time.perf_counter()
        texts[batch] = d.generate(clips)
        seconds = time.perf_counter() - t0
        figures[f"clips_per_s_batch{batch}"] = round(len(clips) / seconds, 2)
        figures[f"clips_per_s_batch{batch}_with_features"] = round(len(clips) / (seconds + features_s), 2)
    figures["speedup_batch8"] = round(figures["clips_per_s_batch8"] / figures["clips_per_s_batch1"], 2)
    figures["speedup_batch8_with_features"] = round(
        figures["clips_per_s_batch8_with_features"] / figures["clips_per_s_batch1_with_features"], 2)
    figures["batch8_texts_equal_batch1"] = texts[1] == texts[8]
    figures["mean_new_words"] = round(sum(len(t.split()) for t in texts[1]) / len(texts[1]), 1)
    figures["target_met"] = figures["speedup_batch8"] >= 3.0
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
