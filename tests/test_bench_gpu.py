"""bench/gpu.py, the one prepared GPU check, runs end to end at toy size on the CPU.

The GPU run itself cannot happen in CI; this keeps its code paths (model assembly without a
tokenizer, both training stages with cache / on-the-fly audio and gradient checkpointing,
batched generation, the JSON report) working between the days a GPU is lent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

VARIANTS = {
    f"stage{stage} {audio}{ckpt}" for stage in (1, 2) for audio in ("cache", "on the fly") for ckpt in ("", " +ckpt")
}


def test_bench_gpu_tiny_runs_every_variant(tmp_path):
    out = tmp_path / "tmp.json"
    # One thread: toy-sized ops gain nothing from two, and a busy 2-core machine made it 3x slower.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py"), "--tiny", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))

    setup = report["setup"]
    assert setup["shape"] == "tiny"
    assert setup["llm_dtype"] == "torch.bfloat16" and setup["projector_dtype"] == "torch.float32"

    training = {r["name"]: r for r in report["training"]}
    assert set(training) == VARIANTS
    for name, r in training.items():
        assert "error" not in r, (name, r)
        assert r["s_per_step"] > 0 and r["tokens_per_s"] > 0, (name, r)
        assert r["peak_memory_mib"] > 0
        # Gradients reach every trainable tensor: the projector, and in stage 2 every LoRA A and B.
        assert r["nonzero_grad_tensors"] == r["trainable_tensors"] > 0, (name, r)
        layers = setup["llm_config"]["num_hidden_layers"]
        assert r["checkpointed_layers"] == (layers if r["gradient_checkpointing"] else 0), (name, r)
    assert training["stage1 cache"]["trainable_tensors"] == 2  # projector weight + bias
    stage2 = training["stage2 cache +ckpt"]
    assert stage2["trainable_tensors"] == 2 + 4 * 2 * setup["llm_config"]["num_hidden_layers"]  # + LoRA A, B on q/k/v/o

    generation = report["generation"]
    for rows in (1, 8):
        r = generation[f"batch{rows}"]
        assert r["tokens_per_s"] > 0 and r["new_tokens_per_row"] == generation["max_new_tokens"], r
    assert generation["speedup_batch8"] > 0


def test_bench_gpu_tiny_qwen2_audio(tmp_path):
    """`--backbone qwen2-audio`: the Qwen2-Audio-shaped model (toy widths, the real 128 x 3000 mel input, 750 audio
    tokens) trains LoRA with the tower on the fly and from its cache, and generates from mel features."""
    out = tmp_path / "qwen.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py"), "--tiny", "--backbone", "qwen2-audio", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    setup = report["setup"]
    assert (setup["backbone"], setup["shape"], setup["audio_tokens"], setup["mel_frames"]) == \
        ("qwen2-audio", "tiny", 750, 3000)
    assert setup["llm_dtype"] == setup["encoder_dtype"] == "torch.bfloat16"
    training = {r["name"]: r for r in report["training"]}
    assert set(training) == {f"stage2 {audio}{ckpt}" for audio in ("cache", "on the fly") for ckpt in ("", " +ckpt")}
    layers = setup["llm_config"]["num_hidden_layers"]
    for name, r in training.items():
        assert "error" not in r and r["s_per_step"] > 0 and r["audio_tokens"] == 750, (name, r)
        assert r["nonzero_grad_tensors"] == r["trainable_tensors"] == 4 * 2 * layers, (name, r)  # LoRA A, B on q/k/v/o
    for rows in (1, 8):
        r = report["generation"][f"batch{rows}"]
        assert r["tokens_per_s"] > 0 and r["new_tokens_per_row"] == report["generation"]["max_new_tokens"], r
