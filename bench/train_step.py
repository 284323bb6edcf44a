"""Seconds per optimizer step with the embedding cache vs audio computed on the fly.

    python bench/train_step.py --dataset mv4all-demo/dataset --audio-root mv4all-demo/music4all

Same process, same batches, same small LLM, same ImageBind-huge-sized audio encoder (our
ImageBind audio branch at full size, 86 M parameters, random weights): stage-1 training steps
(projector trainable, AdamW) with

- ``on the fly``: decode + fbank in the collator, the frozen encoder inside ``forward``;
- ``cache``: per-clip embeddings computed once beforehand (what ``mv4all embed`` stores).

Reported per mode: seconds per step, the share of step time spent on audio (decode + fbank +
encoder; cache lookup for the cache), and peak memory (CUDA: allocated; CPU: process max RSS,
cumulative, so the cache mode runs first). Prints a table and writes JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    def __init__(self):
        self.total = 0.0

    def wrap(self, fn, device):
        def timed(*args, **kwargs):
            _sync(device)
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            _sync(device)
            self.total += time.perf_counter() - t0
            return out

        return timed


def build(dataset, hidden, layers, device, dtype):
    from mv4all.model import MV4AllForConditionalGeneration, add_audio_token, build_audio_encoder
    from train import make_tiny
    docs, _ = make_tiny.train_texts(dataset)
    tokenizer = make_tiny.make_tokenizer(docs, 1024)
    add_audio_token(tokenizer)
    torch.manual_seed(0)
    lm = make_tiny.make_llm(tokenizer, hidden=hidden, layers=layers)
    lm.resize_token_embeddings(len(tokenizer))
    encoder = build_audio_encoder("imagebind")  # ImageBind-huge audio branch, random weights
    model = MV4AllForConditionalGeneration.from_language_model(lm, audio_encoder="imagebind", tokenizer=tokenizer)
    model.model.audio_encoder = encoder
    model.freeze_language_model()
    model.model.projector.requires_grad_(True)
    return model.to(device=device, dtype=dtype), tokenizer


def run_mode(name, model, collator, batches, device, warmup: int):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.001)
    audio = Timer()
    collator.audio_for = audio.wrap(collator.audio_for, device)  # decode + fbank, or the cache lookup
    encoder = model.model.audio_encoder
    encoder.encode = audio.wrap(encoder.encode, device)  # the frozen encoder inside forward
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, audio_times, losses = [], [], []
    for i, rows in enumerate(batches):
        audio.total = 0.0
        _sync(device)
        t0 = time.perf_counter()
        batch = {k: v.to(device) for k, v in collator(rows).items()}
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            audio_times.append(audio.total)
            losses.append(loss.item())
    del encoder.encode, collator.audio_for
    step = sum(times) / len(times)
    share = sum(audio_times) / sum(times)
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"mode": name, "steps": len(times), "sec_per_step": step,
            "audio_sec_per_step": sum(audio_times) / len(times),
            "audio_share": share, "peak_memory_mib": peak, "first_loss": losses[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mv4all-demo/dataset")
    parser.add_argument("--audio-root", default="mv4all-demo/music4all")
    parser.add_argument("--steps", type=int, default=8, help="measured steps per mode")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256, help="small LLM width")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from mv4all.data import load_split
    from mv4all.inputs import CAPTION_INSTRUCTION
    from mv4all.model import MV4AllCollator
    from mv4all.model.embedding_cache import AudioFeatureReader, compute_embeddings

    device = torch.device(args.device)
    model, tokenizer = build(args.dataset, args.hidden, args.layers, device, torch.float32)
    rows = list(load_split(args.dataset, "music_caption", "train"))
    n = args.steps + args.warmup
    batches = [[rows[(i * args.batch_size + j) % len(rows)] for j in range(args.batch_size)] for i in range(n)]
    kw = dict(combination="1", instruction=CAPTION_INSTRUCTION, target_field="music_caption")
    config = model.config

    t0 = time.perf_counter()
    cache = compute_embeddings(model.model.audio_encoder, {r["id"]: r["audio"] for r in rows}, args.audio_root,
                               config.clips_per_audio, config.clip_sampler, batch_size=8, device=device)
    embed_seconds = time.perf_counter() - t0

    results = [
        run_mode("cache", model, MV4AllCollator.for_model(tokenizer, config, audio_embeddings=cache, **kw),
                 batches, device, args.warmup),
        run_mode("on the fly", model, MV4AllCollator.for_model(
            tokenizer, config, audio_features=AudioFeatureReader.for_model(model, args.audio_root), **kw),
            batches, device, args.warmup),
    ]
    cached, live = results
    report = {
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"),
        "encoder_params": sum(p.numel() for p in model.model.audio_encoder.parameters()),
        "llm": {"hidden": args.hidden, "layers": args.layers},
        "batch_size": args.batch_size,
        "embed_once_seconds": embed_seconds,
        "embed_once_clips": len(rows),
        "results": results,
        "speedup": live["sec_per_step"] / cached["sec_per_step"],
    }
    print(f"device: {report['device']}; encoder {report['encoder_params'] / 1e6:.1f} M params; "
          f"LLM {args.hidden}x{args.layers}; batch {args.batch_size}; {args.steps} steps per mode")
    print(f"{'mode':<12} {'s/step':>9} {'audio s/step':>13} {'audio share':>12} {'peak MiB':>10}")
    for r in results:
        print(f"{r['mode']:<12} {r['sec_per_step']:>9.4f} {r['audio_sec_per_step']:>13.4f} "
              f"{100 * r['audio_share']:>11.2f}% {r['peak_memory_mib']:>10.0f}")
    print(f"speed-up with the cache: {report['speedup']:.1f}x (cache built once in {embed_seconds:.1f} s "
          f"for {len(rows)} audios)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
