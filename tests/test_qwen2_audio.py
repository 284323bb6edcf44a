"""A transformers audio LLM as the backbone (issue 16): Qwen2-Audio, trained and described like the mv4all model.

Offline and on the CPU: a tiny random ``Qwen2AudioForConditionalGeneration`` (2-layer Qwen2 LM, 2-layer tower with
the real 128 mel bins x 3000 frames -> 750 audio tokens) with a BPE tokenizer trained on the sample build's train
split (``train/make_tiny.py``), saved to a folder and loaded back through ``from_pretrained``, trained by
``train/sft.py`` with ``train/configs/qwen2_audio.yaml`` for 10 steps on the shared sample build.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
QWEN_YAML = REPO / "train" / "configs" / "qwen2_audio.yaml"
STEPS = 10


@dataclass
class QwenRun:
    root: Path
    checkpoint: Path
    run: Path
    model: object  # the trained PeftModel, as training left it
    build: object
    timings: dict = field(default_factory=dict)

    def overrides(self, **extra):
        return {"dataset": str(self.build.out), "audio_root": str(self.build.corpus),
                "language_model": str(self.checkpoint), "precision": "fp32", "num_threads": 1,
                "dataloader_num_workers": 0, "logging_steps": 1, "save_steps": 1000, "disable_tqdm": True,
                "learning_rate": 1e-2, "warmup_steps": 0, "lora": {"r": 8, "alpha": 16, "dropout": 0.0}, **extra}


@pytest.fixture(scope="module")
def qwen(sample_build, tmp_path_factory) -> QwenRun:
    from train import make_tiny, sft

    root = tmp_path_factory.mktemp("qwen2-audio")
    started = time.perf_counter()
    checkpoint = make_tiny.make_qwen2_audio(root / "checkpoint", make_tiny.train_texts(sample_build.out)[0])
    made = time.perf_counter() - started
    q = QwenRun(root, checkpoint, root, None, sample_build)
    started = time.perf_counter()
    q.run, q.model, _ = sft.train(QWEN_YAML, 2, q.overrides(output_dir=str(root / "run-{inputs}"), max_steps=STEPS),
                                  return_model=True)
    q.timings = {"make_checkpoint_s": round(made, 1), "train_10_steps_s": round(time.perf_counter() - started, 1)}
    print(f"tiny Qwen2-Audio: {q.timings}")
    return q


def _processor(q: QwenRun):
    from mv4all.model.audio_lm import AudioLMProcessor, load_audio_lm_processor

    return AudioLMProcessor(load_audio_lm_processor(q.checkpoint))


def _rows(build, split="train", n=2):
    from mv4all.describe import load_split

    return load_split(build.out, split)[:n]


def test_collator_labels_cover_only_the_output(qwen):
    from mv4all.model import IGNORE_INDEX, MV4AllCollator

    processor = _processor(qwen)
    assert processor.audio_tokens == 750 and processor.sample_rate == 16000 and processor.frames == 3000
    rows = _rows(qwen.build)
    batch = MV4AllCollator(processor, combination="1+2+3+4", audio_root=qwen.build.corpus, max_length=None)(rows)
    assert batch["input_features"].shape == (2, 128, 3000) and batch["feature_attention_mask"].all()
    tokenizer = processor.tokenizer
    for i, row in enumerate(rows):
        ids, labels, mask = batch["input_ids"][i], batch["labels"][i], batch["attention_mask"][i]
        kept = (labels != IGNORE_INDEX).nonzero().flatten()
        # the output and its end token, in one block at the end of the example (right padding after it)
        assert kept.tolist() == list(range(int(kept[0]), int(mask.sum())))
        assert tokenizer.decode(ids[kept]) == row["mv_description_text"].strip() + "<|im_end|>"
        audio = ids == processor.audio_token_id
        assert int(audio.sum()) == 750 and (labels[audio] == IGNORE_INDEX).all()
        prompt = tokenizer.decode(ids[: int(kept[0])][~audio[: int(kept[0])]])
        # ② ③ ④ as the shared prompt code writes them, ① as the model's audio entry, in its chat template
        assert "Audio 1: <|audio_bos|><|audio_eos|>" in prompt and f"MV type: {row['mv_type']}" in prompt
        assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")
    text_only = MV4AllCollator(processor, combination="2+3")(rows)
    assert "input_features" not in text_only and not (text_only["input_ids"] == processor.audio_token_id).any()


def test_ten_steps_lower_the_loss(qwen):
    losses = [json.loads(line)["loss"] for line in (qwen.run / "logs" / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert len(losses) == STEPS
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, losses


def test_audio_tower_stays_bit_identical(qwen):
    from mv4all.model.audio_lm import load_audio_lm, tower_sha256

    fresh = load_audio_lm("qwen2-audio", qwen.checkpoint).model.audio_tower.state_dict()
    trained = qwen.model.get_base_model().model.audio_tower.state_dict()
    assert fresh.keys() == trained.keys()
    for name, tensor in fresh.items():
        assert trained[name].dtype == tensor.dtype and torch.equal(trained[name], tensor), name
    assert not any(p.requires_grad for p in qwen.model.get_base_model().model.audio_tower.parameters())
    trainable = [n for n, p in qwen.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
    info = json.loads((qwen.run / "run.json").read_text())
    assert info["audio_encoder"]["sha256"] == tower_sha256(qwen.model.get_base_model().model.audio_tower)
    assert info["frozen_sha256"]


def test_audio_changes_the_logits(qwen):
    from mv4all.model import MV4AllCollator
    from mv4all.model.run import load_run

    model, processor, info = load_run(qwen.run)
    assert info["backbone"] == "qwen2-audio" and type(processor).__name__ == "Qwen2AudioProcessor"
    from mv4all.model.audio_lm import AudioLMProcessor

    collator = MV4AllCollator(AudioLMProcessor(processor), combination="1+2+3+4", inference=True, max_length=None)
    row = dict(_rows(qwen.build, n=1)[0])
    other = _rows(qwen.build, n=4)[3]
    logits = []
    for source in (row, other, None):
        features = collator.processor.row_features(source, qwen.build.corpus) if source else torch.zeros(128, 3000)
        with torch.no_grad():
            logits.append(model(**collator([{**row, "input_features": features}])).logits[0, -1])
    assert not torch.allclose(logits[0], logits[1], atol=1e-4) and not torch.allclose(logits[0], logits[2], atol=1e-4)


def test_describe_batched_matches_one_by_one(qwen):
    from mv4all.decoding import Decoding
    from mv4all.describe import Describer
    from mv4all.model.audio_lm import AudioLMProcessor

    describer = Describer.from_run(qwen.run, decoding=Decoding(max_new_tokens=12, batch_size=4))
    assert isinstance(describer.processor, AudioLMProcessor) and describer.sample_rate == 16000
    rows = []
    for row in _rows(qwen.build, "test", 4):
        row = dict(row)
        row["input_features"] = describer.processor.row_features(row, qwen.build.corpus)
        rows.append(row)
    started = time.perf_counter()
    batched = describer.generate(rows)
    one = Describer(describer.model, describer.processing, describer.run_info,
                    decoding=describer.decoding.replace(batch_size=1)).generate(rows)
    qwen.timings["describe_4_rows_twice_s"] = round(time.perf_counter() - started, 1)
    assert batched == one and all(isinstance(t, str) for t in batched)
    text, window = describer.describe(qwen.build.corpus / rows[0]["audio"], genres=["pop"], mv_type="Lyric Video")
    assert window.seconds == 30 and isinstance(text, str)


def test_run_folder_contract(qwen):
    from typer.testing import CliRunner

    from mv4all.cli import app
    from mv4all.model.run import run_files

    info = json.loads((qwen.run / "run.json").read_text())
    assert (info["backbone"], info["stage"], info["init_from"], info["tokens_per_audio"]) == \
        ("qwen2-audio", 2, None, 750)
    assert info["global_step"] == STEPS and info["base_model"]["sha256"] and info["audio_encoder"]["local"]
    files, others = run_files(qwen.run)
    assert {"run.json", "README.md", "config.yaml", "generation_config.json", "stage2/adapter_model.safetensors",
            "stage2/adapter_config.json", "processor/processor_config.json", "processor/tokenizer.json",
            "processor/chat_template.jinja"} <= set(files)
    assert not any(f.startswith(("tokenizer/", "checkpoints/")) for f in files)
    card = (qwen.run / "README.md").read_text()
    assert "qwen2-audio" in card and "no stage 1" in card and "$" not in card.split("---", 2)[2]
    dry = CliRunner().invoke(app, ["push", "model", str(qwen.run), "--repo-id", "me/mv-qwen", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "stage2/adapter_model.safetensors" in dry.stdout and "processor/tokenizer.json" in dry.stdout


def test_tower_cache_trains_like_the_tower(qwen, capsys):
    from mv4all.model.audio_lm import (
        build_tower_cache,
        cached_audio_inputs,
        check_tower_cache,
        load_audio_lm,
        tower_cache_size,
    )
    from mv4all.model.embedding_cache import EmbeddingCache
    from train import sft

    out = qwen.root / "tower-cache"
    assert build_tower_cache(qwen.checkpoint, qwen.build.out, qwen.build.corpus, out, precision="fp32",
                             dry_run=True)["bytes_per_clip"] == 750 * 32 * 4 and not out.exists()
    build_tower_cache(qwen.checkpoint, qwen.build.out, qwen.build.corpus, out, precision="fp32", batch_size=6)
    printed = capsys.readouterr().out
    assert "750 frames x 32 dims x 4 bytes = 93.8 KiB per clip" in printed
    cache = EmbeddingCache(out)
    model = load_audio_lm("qwen2-audio", qwen.checkpoint)
    check_tower_cache(cache, "qwen2-audio", model, "fp32")
    with pytest.raises(ValueError, match="made in fp32"):
        check_tower_cache(cache, "qwen2-audio", model, "bf16")
    real = tower_cache_size(model.config, num_clips=1)
    assert (real["frames"], real["dim"]) == (750, 32)

    from mv4all.model import MV4AllCollator

    rows = _rows(qwen.build)
    live = MV4AllCollator(_processor(qwen), audio_root=qwen.build.corpus, max_length=None)(rows)
    cached = MV4AllCollator(_processor(qwen), audio_embeddings=cache, max_length=None)(rows)
    with torch.no_grad():
        a = model(**live).logits
        b = model(**cached_audio_inputs(model, "qwen2-audio", cached)).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    run = sft.train(QWEN_YAML, 2, qwen.overrides(output_dir=str(qwen.root / "cached"), max_steps=2,
                                                 embeddings=str(out)))
    assert json.loads((run / "run.json").read_text())["global_step"] == 2


def test_config_stages_follow_the_backbone(qwen, tmp_path):
    from train.arguments import load_config

    common = qwen.overrides(output_dir=str(tmp_path / "x"))
    cfg = load_config(QWEN_YAML, 2, common)
    assert (cfg["backbone"], cfg["stages"], cfg["init_from"]) == ("qwen2-audio", [2], None)
    with pytest.raises(ValueError, match="aligned to audio already"):
        load_config(QWEN_YAML, 1, {**common, "output_dir": str(tmp_path / "y")})
    with pytest.raises(ValueError, match="remove init_from"):
        load_config(QWEN_YAML, 2, {**common, "init_from": str(qwen.run)})
    with pytest.raises(ValueError, match="unknown backbone"):
        load_config(QWEN_YAML, 2, {**common, "backbone": "qwen3-audio"})
    with pytest.raises(ValueError, match="do not fit backbone 'mv4all'"):
        load_config(REPO / "train" / "configs" / "tiny.yaml", 2, {**common, "backbone": "mv4all", "stages": [2]})


def test_memory_estimate_of_the_real_model():
    from mv4all.model.memory import GB, audio_lm_config, estimate_audio_lm

    config = audio_lm_config("qwen2-audio", "Qwen/Qwen2-Audio-7B-Instruct")  # offline: the recorded config
    estimate = estimate_audio_lm(config, weight_dtype=torch.bfloat16, sequence_length=2100, batch_size=2,
                                 lora_r=32)
    assert 8.3e9 < estimate.total_params < 8.5e9  # 7.76 B LLM + 0.64 B tower + projector
    assert 30e6 < estimate.trainable_params < 40e6  # LoRA r=32 on q/k/v/o of 32 layers
    assert 14 * GB < estimate.weights < 17 * GB and estimate.total < 0.92 * 80e9  # one 80 GB GPU


def test_leaderboard_with_one_row_of_each_backbone(qwen, inference_runs, tmp_path):
    from eval import leaderboard as L

    cfg = {"dataset": str(qwen.build.out), "split": "test", "audio_root": str(qwen.build.corpus),
           "out_dir": str(tmp_path / "lb"), "device": "cpu", "decoding": {"max_new_tokens": 8, "batch_size": 4},
           "rows": [{"name": "1+2+3+4", "group": "main", "run_dir": str(inference_runs.stage2("1+2+3+4"))},
                    {"name": "qwen 1+2+3+4", "group": "main", "run_dir": str(qwen.run)}]}
    result = L.run_leaderboard(cfg)
    md = result.markdown
    assert "| 1+2+3+4 [mv4all] | 1+2+3+4 |" in md and "| qwen 1+2+3+4 [qwen2-audio] | 1+2+3+4 |" in md
    assert "Backbones (in brackets" in md and "Qwen2AudioForConditionalGeneration" in md
    report = json.loads(result.files["json"].read_text())
    assert {r["name"]: r["backbone"] for r in report["results"]} == {"1+2+3+4": "mv4all",
                                                                     "qwen 1+2+3+4": "qwen2-audio"}
    assert all(r["n"] == 4 for r in report["results"])


def test_embed_command_prints_the_tower_cache_size_first(qwen, tmp_path):
    """`mv4all embed --backbone qwen2-audio`: the size per clip is printed before anything is built."""
    from typer.testing import CliRunner

    from mv4all.cli import app

    out = tmp_path / "tower"
    args = ["embed", "--dataset", str(qwen.build.out), "--audio-root", str(qwen.build.corpus),
            "--encoder", str(qwen.checkpoint), "--out", str(out), "--backbone", "qwen2-audio", "--precision", "fp32"]
    res = CliRunner().invoke(app, [*args, "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "93.8 KiB per clip" in res.output and not out.exists()
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (out / "index.json").is_file() and res.output.index("per clip") < res.output.index("wrote")
