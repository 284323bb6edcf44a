"""The project's one prepared GPU check: the mv4all model at Vicuna-7B size, random weights.

Why it exists: development and CI machines have no GPU, so nothing else runs the model at the
size the paper trains. Run this script the day a GPU is lent (one H200: about 3 minutes, 8 at
most) and keep its JSON; ``--tiny`` runs the same code paths at toy size on a CPU in seconds
(``tests/test_bench_gpu.py`` does that in CI).

    python bench/gpu.py --out gpu.json          # 7B shape, on cuda when there is one
    python bench/gpu.py --tiny [--out tiny.json] # toy shape, on the CPU

What it builds, with no download: a ``LlamaForCausalLM`` with Vicuna-7B's config (random
weights, created directly on the device in bf16) and our ImageBind-huge audio branch (86 M
parameters, random, float32 as ``mv4all.model.run.build_model`` leaves it), assembled by
``MV4AllForConditionalGeneration.from_language_model`` with ``<audio>`` = id 32000. No
tokenizer: prompts are random token ids with one ``<audio>`` placeholder per row, labels -100
on the prompt.

What it reports:

- training, batch 2, bf16 autocast, AdamW (lr 1e-4, betas 0.9/0.95), frozen weights bf16 and
  trainable ones float32; stage 1 (projector only, caption-sized sequences, ~250 tokens) and
  stage 2 (projector + LoRA r=32 on q/k/v/o, prompt ~120 + MV description ~1000 tokens), each
  with the embedding cache (``audio_embeds``) or the encoder on the fly (``input_features``),
  with gradient checkpointing off and on: seconds per step, training tokens per second, peak
  memory (CUDA: ``max_memory_allocated``, reset per variant; CPU: the process's max RSS, which
  is cumulative), and how many trainable tensors got a nonzero gradient;
- greedy generation of ``--max-new-tokens`` tokens (run to full length) from left-padded
  ~120-token prompts with audio embeddings, at batch 1 and batch 8: generated tokens per
  second and the batch-8 speed-up.

A CUDA out-of-memory error is recorded for its variant (``{"error": "out of memory"}``) and
the run goes on. Prints a table; ``--out`` writes every figure as JSON.

``--backbone qwen2-audio`` measures a Qwen2-Audio-7B-shaped ``Qwen2AudioForConditionalGeneration``
instead (random weights in bf16 built on the device from the published config, ``--tiny``: toy widths
with the real 128 x 3000 mel input): LoRA r=32 on q/k/v/o of its language model (its only training
stage), 750 audio tokens + prompt + MV description per row, the tower on the fly (``input_features``)
or from its cache (``audio_embeds`` -> ``inputs_embeds``), checkpointing off and on; then generation
at batch 1 and 8 from mel features. The JSON has the same sections; ``setup.backbone`` says which.

    python bench/gpu.py --backbone qwen2-audio --out gpu-qwen2-audio.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout where mv4all is not installed (the GPU machine)
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

# Sizes of the two shapes; any CLI option given explicitly wins.
FULL = {
    "llm": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=32, vocab_size=32001, max_position_embeddings=4096),
    "encoder": "imagebind",
    "stage1_prompt": 40, "stage1_target": 210,
    "stage2_prompt": 120, "stage2_target": 1000,
    "gen_prompt": 120, "max_new_tokens": 1024,  # a full-length MV description
    "steps": 10, "warmup": 3,
}
TINY = {
    "llm": dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=4, vocab_size=512, max_position_embeddings=512),
    "encoder": "tiny",
    "stage1_prompt": 12, "stage1_target": 36,
    "stage2_prompt": 24, "stage2_target": 48,
    "gen_prompt": 24, "max_new_tokens": 8,
    "steps": 2, "warmup": 1,
}
QWEN_FULL = {
    "stage2_prompt": 120, "stage2_target": 1000, "gen_prompt": 120, "max_new_tokens": 1024, "steps": 10, "warmup": 3,
}
QWEN_TINY = {
    "text": dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=512, max_position_embeddings=2048),
    "audio": dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, num_mel_bins=128,
                  max_source_positions=1500),
    "stage2_prompt": 24, "stage2_target": 48, "gen_prompt": 24, "max_new_tokens": 8, "steps": 2, "warmup": 1,
}
GEN_BATCHES = (1, 8)
LOW_DTYPE = torch.bfloat16  # frozen weights and autocast, on GPU and CPU alike


# --------------------------------------------------------------------------- setup


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes, same code paths (CPU by default)")
    parser.add_argument("--backbone", default="mv4all", choices=("mv4all", "qwen2-audio"),
                        help="the mv4all model (Vicuna-7B shape) or a Qwen2-Audio-7B-shaped model")
    parser.add_argument("--device", help="cuda or cpu [cuda when available, cpu with --tiny]")
    parser.add_argument("--out", type=Path, help="write every figure as JSON here")
    parser.add_argument("--batch-size", type=int, default=2, help="training batch")
    parser.add_argument("--steps", type=int, help="timed steps per variant [10; tiny 2]")
    parser.add_argument("--warmup", type=int, help="untimed steps first [3; tiny 1]")
    parser.add_argument("--stage1-prompt", type=int, help="stage-1 prompt tokens [40; tiny 12]")
    parser.add_argument("--stage1-target", type=int, help="stage-1 caption tokens [210; tiny 36]")
    parser.add_argument("--stage2-prompt", type=int, help="stage-2 prompt tokens [120; tiny 24]")
    parser.add_argument("--stage2-target", type=int, help="stage-2 MV description tokens [1000; tiny 48]")
    parser.add_argument("--gen-prompt", type=int, help="longest generation prompt [120; tiny 24]")
    parser.add_argument("--max-new-tokens", type=int, help="generated tokens per row [1024; tiny 8]")
    args = parser.parse_args(argv)
    if args.backbone == "qwen2-audio":
        preset = QWEN_TINY if args.tiny else QWEN_FULL
    else:
        preset = TINY if args.tiny else FULL
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    return args


def build_model(llm: dict, encoder: str, device: torch.device):
    """Random LLM (bf16, made on ``device``) + random encoder + fresh float32 projector."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from mv4all.model import MV4AllForConditionalGeneration

    audio_token_id = llm["vocab_size"] - 1  # Vicuna: 32000 = the one token added after the 32000 of Llama
    torch.manual_seed(0)
    with torch.device(device):
        lm = LlamaForCausalLM._from_config(LlamaConfig(**llm), dtype=LOW_DTYPE)
        model = MV4AllForConditionalGeneration.from_language_model(
            lm, audio_encoder=encoder, tokenizer=None, audio_token_id=audio_token_id
        )
    return model


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def trainable(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def prepare_stage1(model):
    """Projector only; LLM and encoder frozen (train/sft.py's stage 1)."""
    model.freeze_language_model()
    model.get_audio_encoder().freeze()
    model.model.projector.requires_grad_(True)
    return model


def prepare_stage2(model):
    """Projector + LoRA r=32/alpha 32 on q/k/v/o (train/sft.py's stage 2)."""
    from peft import get_peft_model

    from mv4all.model import lora_config

    return get_peft_model(prepare_stage1(model), lora_config(r=32, alpha=32, dropout=0.1))


def set_checkpointing(model, on: bool) -> int:
    """Turn gradient checkpointing on or off; return how many decoder layers now checkpoint.

    transformers 5.24 renamed ``gradient_checkpointing_*`` to ``activation_checkpointing_*``
    (the old names warn); older 5.x, as on the GPU image, has only the old names.
    """
    from transformers.modeling_layers import GradientCheckpointingLayer

    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        if on:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.activation_checkpointing_disable()
    elif on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_disable()
    return sum(1 for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing)


# --------------------------------------------------------------------------- inputs


def random_ids(shape, config, generator) -> torch.Tensor:
    """Ordinary token ids: above the special ids 0-2, below ``<audio>``."""
    return torch.randint(3, config.audio_token_id, shape, generator=generator)


def audio_input(kind: str, rows: int, config, generator) -> dict[str, torch.Tensor]:
    """``audio_embeds`` (the cache: L2-normalised per clip) or ``input_features`` (fbank-shaped clips)."""
    clips = config.clips_per_audio
    if kind == "cache":
        dim = config.audio_config.out_embed_dim
        embeds = torch.randn(rows, clips, dim, generator=generator)
        return {"audio_embeds": torch.nn.functional.normalize(embeds, dim=-1)}
    mel, frames = config.audio_config.num_mel_bins, config.audio_config.target_length
    return {"input_features": torch.randn(rows, clips, 1, mel, frames, generator=generator)}


def train_batch(config, batch: int, prompt: int, target: int, audio: str, device) -> dict[str, torch.Tensor]:
    """``<s> <audio> prompt... target...``; loss on the target only."""
    generator = torch.Generator().manual_seed(1)
    ids = random_ids((batch, prompt + target), config, generator)
    ids[:, 0] = config.text_config.bos_token_id
    ids[:, 1] = config.audio_token_id
    labels = ids.clone()
    labels[:, :prompt] = -100
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    out.update(audio_input(audio, batch, config, generator))
    return {k: v.to(device) for k, v in out.items()}


def generation_batch(config, rows: int, longest: int, device) -> dict[str, torch.Tensor]:
    """Prompts of different lengths (up to ``longest``), left-padded as ``Describer`` does."""
    generator = torch.Generator().manual_seed(2)
    lengths = [longest - (i * 7) % max(1, longest // 4) for i in range(rows)]
    ids = torch.zeros(rows, longest, dtype=torch.long)  # pad id 0 (Vicuna's <unk>)
    mask = torch.zeros(rows, longest, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, longest - n:] = random_ids((n,), config, generator)
        ids[i, longest - n] = config.text_config.bos_token_id
        ids[i, longest - n + 1] = config.audio_token_id
        mask[i, longest - n:] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    out.update(audio_input("cache", rows, config, generator))
    return {k: v.to(device) for k, v in out.items()}


# --------------------------------------------------------------------------- measuring


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def allocated_mib(device: torch.device) -> float | None:
    return torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else None


def nonzero_grads(params) -> int:
    return sum(1 for p in params if p.grad is not None and bool(p.grad.ne(0).any()))


def train_steps(model, batch: dict, steps: int, warmup: int, device: torch.device) -> dict:
    """Warm-up then timed optimizer steps; grads are checked on the last step (LoRA B starts at 0)."""
    params = trainable(model)
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.001)
    model.train()
    times, losses, grads = [], [], 0
    for step in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=LOW_DTYPE):
            loss = model(**batch, use_cache=False).loss
        loss.backward()
        if step == warmup + steps - 1:
            grads = nonzero_grads(params)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - t0)
            losses.append(loss.item())
    tokens = batch["input_ids"].numel()
    target = int((batch["labels"] != -100).sum())
    step_s = sum(times) / len(times)
    return {
        "s_per_step": step_s,
        "s_per_step_min": min(times),
        "tokens_per_s": tokens / step_s,
        "target_tokens_per_s": target / step_s,
        "peak_memory_mib": peak_memory_mib(device),
        "loss": losses[-1],
        "trainable_tensors": len(params),
        "trainable_params": sum(p.numel() for p in params),
        "nonzero_grad_tensors": grads,
    }


def measure_variant(model, stage: int, audio: str, checkpointing: bool, prompt: int, target: int, args, device,
                    fill) -> dict:
    """One training variant's record: ``fill(result)`` builds the batch and adds the step figures; a CUDA
    out-of-memory error is recorded instead, and the batch, gradients and cache are freed either way."""
    result = {"name": f"stage{stage} {audio}{' +ckpt' if checkpointing else ''}", "stage": stage, "audio": audio,
              "gradient_checkpointing": checkpointing, "batch_size": args.batch_size,
              "prompt_tokens": prompt, "target_tokens": target}
    free_memory(device)
    result["checkpointed_layers"] = set_checkpointing(model, checkpointing)
    result["allocated_before_mib"] = allocated_mib(device)
    try:
        fill(result)
    except torch.OutOfMemoryError:
        result["error"] = "out of memory"
        result["peak_memory_mib"] = peak_memory_mib(device)
    finally:
        model.zero_grad(set_to_none=True)
        free_memory(device)
    return result


def run_variant(model, stage: int, audio: str, checkpointing: bool, args, device) -> dict:
    if stage == 1:
        prompt, target = args.stage1_prompt, args.stage1_target
    else:
        prompt, target = args.stage2_prompt, args.stage2_target

    def fill(result: dict) -> None:
        batch = train_batch(model.config, args.batch_size, prompt, target, audio, device)
        result.update(train_steps(model, batch, args.steps, args.warmup, device))

    return measure_variant(model, stage, audio, checkpointing, prompt, target, args, device, fill)


def run_stage(model, stage: int, args, device) -> list[dict]:
    return [run_variant(model, stage, audio, ckpt, args, device)
            for audio in ("cache", "on the fly") for ckpt in (False, True)]


def measure_generation(model, make_batch, out: dict, device) -> dict:
    """Greedy tokens/s at each of ``GEN_BATCHES`` into ``out`` (every row runs to ``out["max_new_tokens"]``),
    from ``make_batch(rows)`` on ``device``; the batch-8 speed-up last. A CUDA out-of-memory error is recorded."""
    new = out["max_new_tokens"]
    for rows in GEN_BATCHES:
        free_memory(device)
        batch = make_batch(rows)
        kwargs = dict(do_sample=False, pad_token_id=0)
        try:
            with torch.inference_mode():
                model.generate(**batch, max_new_tokens=2, min_new_tokens=2, **kwargs)  # warm-up at this shape
                sync(device)
                t0 = time.perf_counter()
                ids = model.generate(**batch, max_new_tokens=new, min_new_tokens=new, **kwargs)
                sync(device)
            seconds = time.perf_counter() - t0
            made = ids.shape[1] - batch["input_ids"].shape[1]
            out[f"batch{rows}"] = {"seconds": seconds, "new_tokens_per_row": made,
                                   "tokens_per_s": rows * made / seconds, "peak_memory_mib": peak_memory_mib(device)}
        except torch.OutOfMemoryError:
            out[f"batch{rows}"] = {"error": "out of memory"}
        finally:
            del batch
            free_memory(device)
    one, eight = out.get("batch1", {}), out.get("batch8", {})
    if "tokens_per_s" in one and "tokens_per_s" in eight:
        out["speedup_batch8"] = eight["tokens_per_s"] / one["tokens_per_s"]
    return out


def generate_speed(model, args, device) -> dict:
    """Generated tokens/s at batch 1 and 8 (greedy, every row runs to ``max_new_tokens``)."""
    set_checkpointing(model, False)
    model.eval()
    out = {"max_new_tokens": args.max_new_tokens, "prompt_tokens": args.gen_prompt,
           "lora": "unmerged (as Describer runs a loaded run)"}
    return measure_generation(model, lambda rows: generation_batch(model.config, rows, args.gen_prompt, device),
                              out, device)


# --------------------------------------------------------------------------- report


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def versions() -> dict:
    import peft
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__,
            "cuda": torch.version.cuda}


def describe_setup(model, args, device) -> dict:
    encoder = model.get_audio_encoder()
    lm = model.model.language_model
    return {
        "shape": "tiny" if args.tiny else "vicuna-7b",
        "device": device_name(device),
        "versions": versions(),
        "llm_config": args.llm,
        "llm_params": count_params(lm) + count_params(model.lm_head),
        "llm_dtype": str(next(lm.parameters()).dtype),
        "attn_implementation": lm.config._attn_implementation,
        "audio_encoder": args.encoder,
        "encoder_params": count_params(encoder),
        "encoder_dtype": str(next(encoder.parameters()).dtype),
        "projector_params": count_params(model.model.projector),
        "projector_dtype": str(model.model.projector.linear_1.weight.dtype),
        "autocast_dtype": str(LOW_DTYPE),
        "audio_token_id": model.config.audio_token_id,
        "clips_per_audio": model.config.clips_per_audio,
        "optimizer": "AdamW lr 1e-4 betas (0.9, 0.95) weight decay 0.001, grad clip 1.0",
        "steps": args.steps,
        "warmup": args.warmup,
        "peak_memory_kind": ("torch.cuda.max_memory_allocated, reset per variant" if device.type == "cuda"
                             else "process max RSS (cumulative over the run, not reset per variant)"),
    }


def print_report(report: dict):
    s = report["setup"]
    print(f"{s['shape']} on {s['device']}: LLM {s['llm_params'] / 1e6:,.1f} M params {s['llm_dtype']}, "
          f"encoder {s['audio_encoder']} {s['encoder_params'] / 1e6:,.2f} M {s['encoder_dtype']}, "
          f"autocast {s['autocast_dtype']}; {s['steps']} timed steps after {s['warmup']} warm-up")
    print(f"peak memory: {s['peak_memory_kind']}")
    print(f"{'variant':<26} {'tokens':>9} {'s/step':>9} {'tokens/s':>10} {'peak MiB':>10} {'grads':>9}")
    for r in report["training"]:
        tokens = f"{r['batch_size']}x{r['prompt_tokens'] + r['target_tokens'] + r.get('audio_tokens', 0)}"
        if "error" in r:
            print(f"{r['name']:<26} {tokens:>9} {r['error']:>30}")
            continue
        print(f"{r['name']:<26} {tokens:>9} {r['s_per_step']:>9.4f} {r['tokens_per_s']:>10.1f} "
              f"{r['peak_memory_mib']:>10.0f} {r['nonzero_grad_tensors']:>4}/{r['trainable_tensors']:<4}")
    g = report["generation"]
    print(f"generation: greedy, {g['max_new_tokens']} new tokens, prompts <= {g['prompt_tokens']} tokens, left-padded")
    for rows in GEN_BATCHES:
        r = g[f"batch{rows}"]
        if "error" in r:
            print(f"  batch {rows}: {r['error']}")
        else:
            print(f"  batch {rows}: {r['tokens_per_s']:.1f} tokens/s ({r['seconds']:.2f} s, "
                  f"peak {r['peak_memory_mib']:.0f} MiB)")
    if "speedup_batch8" in g:
        print(f"  batch 8 / batch 1: {g['speedup_batch8']:.2f}x")
    print(f"phases (s): {', '.join(f'{k} {v:.1f}' for k, v in report['phase_seconds'].items())}")


# --------------------------------------------------------------------------- Qwen2-Audio


def qwen_config(args):
    """The published Qwen2-Audio-7B config (``mv4all.model.backbones``), or toy widths with the real mel input."""
    import copy

    from transformers import Qwen2AudioConfig

    from mv4all.model.backbones import QWEN2_AUDIO_7B

    if not args.tiny:
        return Qwen2AudioConfig(**copy.deepcopy(QWEN2_AUDIO_7B))
    text = {"model_type": "qwen2", **args.text, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
            "tie_word_embeddings": False}
    return Qwen2AudioConfig(audio_config={"model_type": "qwen2_audio_encoder", **args.audio}, text_config=text,
                            audio_token_index=args.text["vocab_size"] - 1)


def build_qwen(config, device: torch.device):
    """Random weights, bf16, made on ``device``; frozen (LoRA is added by ``prepare_audio_lm``)."""
    from transformers import Qwen2AudioForConditionalGeneration

    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2AudioForConditionalGeneration._from_config(config, dtype=LOW_DTYPE)
    return model.requires_grad_(False)


def qwen_ids(rows: int, prompt: int, target: int, config, generator, audio_tokens: int,
             left_pad: list[int] | None = None):
    """``<|audio_bos|> <|AUDIO|> x 750 <|audio_eos|> prompt... target...`` per row (random ordinary ids)."""
    vocab = config.text_config.vocab_size
    audio_id = config.audio_token_id
    high = min(audio_id, vocab) if audio_id > 3 else vocab
    length = 1 + audio_tokens + prompt + target
    ids = torch.randint(3, high, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    pads = list(left_pad or []) + [0] * rows
    for i in range(rows):  # a shorter prompt, left-padded: the audio placeholders stay whole
        start = min(pads[i], max(0, prompt - 1))
        ids[i, :start] = 0
        mask[i, :start] = 0
        ids[i, start + 1 : start + 1 + audio_tokens] = audio_id
    return ids, mask


def qwen_train_batch(model, spec, batch: int, prompt: int, target: int, audio: str, device) -> dict:
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    frames = int(config.audio_config.max_source_positions) * 2
    tokens = spec.audio_tokens_for_frames(frames)
    generator = torch.Generator().manual_seed(1)
    ids, mask = qwen_ids(batch, prompt, target, config, generator, tokens)
    labels = ids.clone()
    labels[:, : ids.shape[1] - target] = -100
    out = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if audio == "cache":  # the tower's output per clip, as mv4all.model.audio_lm.build_tower_cache stores it
        out["audio_embeds"] = torch.randn(batch, tokens, int(config.audio_config.d_model), generator=generator)
    else:
        out["input_features"] = torch.randn(batch, int(config.audio_config.num_mel_bins), frames, generator=generator)
        out["feature_attention_mask"] = torch.ones(batch, frames, dtype=torch.long)
    return {k: v.to(device) for k, v in out.items()}


def qwen_train_steps(model, spec, batch: dict, steps: int, warmup: int, device) -> dict:
    """``train_steps`` with cached tower outputs turned into ``inputs_embeds`` each step (as AudioLMTrainer does)."""
    from mv4all.model.audio_lm import cached_audio_inputs

    if "audio_embeds" not in batch:
        return train_steps(model, batch, steps, warmup, device)
    original = model.forward

    def forward(**kwargs):
        return original(**cached_audio_inputs(model, spec, kwargs))

    model.forward = forward
    try:
        return train_steps(model, batch, steps, warmup, device)
    finally:
        del model.forward


def run_qwen_variant(model, spec, audio: str, checkpointing: bool, args, device) -> dict:
    prompt, target = args.stage2_prompt, args.stage2_target

    def fill(result: dict) -> None:
        batch = qwen_train_batch(model, spec, args.batch_size, prompt, target, audio, device)
        result["audio_tokens"] = int((batch["input_ids"][0] == model.get_base_model().config.audio_token_id).sum())
        result.update(qwen_train_steps(model, spec, batch, args.steps, args.warmup, device))

    return measure_variant(model, 2, audio, checkpointing, prompt, target, args, device, fill)


def qwen_generate_speed(model, spec, args, device) -> dict:
    """Greedy tokens/s at batch 1 and 8 from left-padded prompts with 750 audio tokens, the tower on the fly."""
    set_checkpointing(model, False)
    model.eval()
    config = model.get_base_model().config
    frames = int(config.audio_config.max_source_positions) * 2
    tokens = spec.audio_tokens_for_frames(frames)
    out = {"max_new_tokens": args.max_new_tokens, "prompt_tokens": args.gen_prompt, "audio_tokens": tokens,
           "lora": "unmerged (as Describer runs a loaded run)"}

    def make_batch(rows: int) -> dict:
        generator = torch.Generator().manual_seed(2)
        pads = [(i * 7) % max(1, args.gen_prompt // 4) for i in range(rows)]
        ids, mask = qwen_ids(rows, args.gen_prompt, 0, config, generator, tokens, left_pad=pads)
        mels = int(config.audio_config.num_mel_bins)
        batch = {"input_ids": ids, "attention_mask": mask,
                 "input_features": torch.randn(rows, mels, frames, generator=generator),
                 "feature_attention_mask": torch.ones(rows, frames, dtype=torch.long)}
        batch = {k: v.to(device) for k, v in batch.items()}
        batch["input_features"] = batch["input_features"].to(LOW_DTYPE)
        return batch

    return measure_generation(model, make_batch, out, device)


def qwen_setup(model, spec, config, args, device) -> dict:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    tower = spec.tower(base)
    lm = spec.module(base, spec.language_model)
    frames = int(config.audio_config.max_source_positions) * 2
    return {
        "backbone": "qwen2-audio",
        "shape": "tiny" if args.tiny else "qwen2-audio-7b",
        "device": device_name(device),
        "versions": versions(),
        "llm_config": {k: getattr(config.text_config, k) for k in ("hidden_size", "intermediate_size",
                                                                   "num_hidden_layers", "num_attention_heads",
                                                                   "num_key_value_heads", "vocab_size")},
        "audio_config": {k: getattr(config.audio_config, k) for k in ("d_model", "encoder_layers",
                                                                     "encoder_attention_heads", "encoder_ffn_dim",
                                                                     "num_mel_bins", "max_source_positions")},
        "llm_params": count_params(lm) + count_params(base.lm_head),
        "llm_dtype": str(next(lm.parameters()).dtype),
        "attn_implementation": lm.config._attn_implementation,
        "audio_encoder": "qwen2-audio tower",
        "encoder_params": count_params(tower),
        "encoder_dtype": str(next(tower.parameters()).dtype),
        "projector_params": count_params(spec.module(base, spec.projector)),
        "projector_dtype": str(next(spec.module(base, spec.projector).parameters()).dtype),
        "mel_frames": frames,
        "audio_tokens": spec.audio_tokens_for_frames(frames),
        "autocast_dtype": str(LOW_DTYPE),
        "audio_token_id": config.audio_token_id,
        "optimizer": "AdamW lr 1e-4 betas (0.9, 0.95) weight decay 0.001, grad clip 1.0",
        "steps": args.steps,
        "warmup": args.warmup,
        "peak_memory_kind": ("torch.cuda.max_memory_allocated, reset per variant" if device.type == "cuda"
                             else "process max RSS (cumulative over the run, not reset per variant)"),
    }


def main_qwen(args, device) -> dict:
    from mv4all.model.audio_lm import prepare_audio_lm
    from mv4all.model.backbones import get_backbone

    spec = get_backbone("qwen2-audio")
    started = time.perf_counter()
    phases = {}
    t0 = time.perf_counter()
    config = qwen_config(args)
    model = prepare_audio_lm(build_qwen(config, device), spec, {"r": 32, "alpha": 32, "dropout": 0.1})
    phases["build"] = time.perf_counter() - t0
    report = {"setup": qwen_setup(model, spec, config, args, device)}
    report["setup"]["weights_allocated_mib"] = allocated_mib(device)
    t0 = time.perf_counter()
    report["training"] = [run_qwen_variant(model, spec, audio, ckpt, args, device)
                          for audio in ("cache", "on the fly") for ckpt in (False, True)]
    phases["stage2"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    report["generation"] = qwen_generate_speed(model, spec, args, device)
    phases["generation"] = time.perf_counter() - t0
    phases["total"] = time.perf_counter() - started
    report["phase_seconds"] = phases
    return report


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.backbone == "qwen2-audio":
        report = main_qwen(args, device)
        print_report(report)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        return report
    started = time.perf_counter()
    phases = {}

    t0 = time.perf_counter()
    model = build_model(args.llm, args.encoder, device)
    phases["build"] = time.perf_counter() - t0
    report = {"setup": describe_setup(model, args, device)}
    report["setup"]["weights_allocated_mib"] = allocated_mib(device)

    t0 = time.perf_counter()
    training = run_stage(prepare_stage1(model), 1, args, device)
    phases["stage1"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = prepare_stage2(model)
    training += run_stage(model, 2, args, device)
    phases["stage2"] = time.perf_counter() - t0
    report["training"] = training

    t0 = time.perf_counter()
    report["generation"] = generate_speed(model, args, device)
    phases["generation"] = time.perf_counter() - t0
    phases["total"] = time.perf_counter() - started
    report["phase_seconds"] = phases

    print_report(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
