"""Two-stage training recipe (train/sft.py) on the shared sample build with tiny local models.

One session fixture makes the tiny models (train/make_tiny.py) and runs stage 1 and stage 2
once; the other tests read those runs. Everything is offline and on CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner  # noqa: E402

from mv4all.cli import app  # noqa: E402
from mv4all.inputs import CAPTION_INSTRUCTION, all_combinations  # noqa: E402
from mv4all.model import MV4AllCollator, load_run  # noqa: E402
from mv4all.model.embedding_cache import AudioFeatureReader, EmbeddingCache  # noqa: E402
from mv4all.model.integrity import frozen_fingerprint  # noqa: E402
from tests.conftest import REPO, STAGE1_STEPS, STAGE2_STEPS, TINY_YAML, StopAfter  # noqa: E402

PAPER_YAML = REPO / "train" / "configs" / "paper.yaml"
from train import sft  # noqa: E402


def _losses(run: Path) -> list[float]:
    lines = (run / "logs" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if '"loss"' in line]


def _rows(build, config="mv_description", n=4):
    from mv4all.data import load_split

    ds = load_split(build.out, config, "train")
    return [ds[i] for i in range(n)]


# --------------------------------------------------------------------------- training


def test_losses_fall_in_both_stages(tiny_runs):
    # Mean loss of the last 25% of steps >= 10% below the first 25%, in both stages.
    for run, steps, factor in ((tiny_runs.stage1, STAGE1_STEPS, 0.9), (tiny_runs.stage2, STAGE2_STEPS, 0.9)):
        losses = _losses(run)
        assert len(losses) == steps
        q = steps // 4
        first, last = sum(losses[:q]) / q, sum(losses[-q:]) / q
        assert last <= factor * first, (run.name, first, last)


def test_run_directory_contract(tiny_runs):
    for run, stage in ((tiny_runs.stage1, 1), (tiny_runs.stage2, 2)):
        info = json.loads((run / "run.json").read_text())
        assert info["stage"] == stage and info["seed"] == 0
        assert info["inputs"] == ("1" if stage == 1 else "1+2+3+4")
        assert info["dataset"]["build_id"] and len(info["dataset"]["test_ids_sha256"]) == 64
        assert info["audio_encoder"]["name"] == "tiny" and len(info["audio_encoder"]["sha256"]) == 64
        assert info["tokens_per_audio"] == 1 and info["base_model"]["id"].endswith("tiny/llm")
        assert info["mv4all_version"] and "git_sha" in info and info["frozen_sha256"]
        for rel in ("config.yaml", "README.md", "trainer_state.json", "logs/metrics.jsonl", "tokenizer"):
            assert (run / rel).exists(), rel
        assert any((run / "checkpoints").glob("checkpoint-*"))
        card = (run / "README.md").read_text()
        assert "license: cc-by-nc-sa-4.0" in card and "CC BY-NC-SA 4.0" in card and "$" not in card.split("---")[1]
    assert (tiny_runs.stage1 / "stage1" / "projector.safetensors").is_file()
    assert (tiny_runs.stage1 / "stage1" / "config.json").is_file()
    assert (tiny_runs.stage2 / "stage2" / "adapter_model.safetensors").is_file()
    adapter = json.loads((tiny_runs.stage2 / "stage2" / "adapter_config.json").read_text())
    assert adapter["modules_to_save"] == ["projector"] and adapter["r"] == 8
    assert tiny_runs.stage2.name == "stage2-1+2+3+4"
    # publishable: no absolute paths, checkpoints stay local
    result = CliRunner().invoke(app, ["push", "model", str(tiny_runs.stage2), "--repo-id", "me/x", "--dry-run"])
    assert result.exit_code == 0, result.output
    listed = result.output.splitlines()
    assert "run.json" in listed and not any(line.startswith("checkpoints") for line in listed)


def test_trainable_sets_and_frozen_weights(tiny_runs):
    from safetensors.torch import load_file

    cfg1 = sft.load_config(TINY_YAML, 1, tiny_runs.common())
    model, _ = sft.build_stage_model(cfg1)
    model = sft.prepare_model(model, cfg1)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "model.projector.linear_1.weight", "model.projector.linear_1.bias"}
    cfg2 = sft.load_config(TINY_YAML, 2, tiny_runs.common(init_from=str(tiny_runs.stage1)))
    peft_model = sft.prepare_model(sft.build_stage_model(cfg2)[0], cfg2)
    names = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert names and all(("lora_" in n and "language_model" in n) or "projector.modules_to_save" in n for n in names)
    assert {n.split(".")[-4] for n in names if "lora_A" in n} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    # Frozen weights after each stage equal the base weights, bit for bit.
    lm = load_file(str(tiny_runs.tiny["llm"] / "model.safetensors"))
    enc = load_file(str(tiny_runs.tiny["audio_encoder"] / "model.safetensors"))
    trained = tiny_runs.model2.get_base_model()
    q = trained.model.language_model.layers[0].self_attn.q_proj
    assert torch.equal(q.base_layer.weight, lm["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(trained.model.language_model.norm.weight, lm["model.norm.weight"])
    for name, value in trained.model.audio_encoder.state_dict().items():
        assert torch.equal(value, enc[name]), name
    stage1 = tiny_runs.model1
    assert torch.equal(stage1.model.language_model.layers[1].mlp.down_proj.weight,
                       lm["model.layers.1.mlp.down_proj.weight"])
    assert torch.equal(stage1.lm_head.weight[:-1], lm["lm_head.weight"])  # + the <audio> row
    # Every frozen tensor: the hash train() took before training equals the trained model's.
    for run, model in ((tiny_runs.stage1, tiny_runs.model1), (tiny_runs.stage2, tiny_runs.model2)):
        assert json.loads((run / "run.json").read_text())["frozen_sha256"] == frozen_fingerprint(model).sha256


def test_stage1_uses_the_audio(tiny_runs):
    model, tok, _ = load_run(tiny_runs.stage1)
    rows = _rows(tiny_runs.build, "music_caption", 6)
    collate = MV4AllCollator.for_model(tok, model.config, combination="1", instruction=CAPTION_INSTRUCTION,
                                       target_field="music_caption",
                                       audio_features=AudioFeatureReader.for_model(model, tiny_runs.build.corpus))
    batch = collate(rows)
    with torch.no_grad():
        embeds = model.model.encode_audio(batch.pop("input_features"))
        matched = model(**batch, audio_embeds=embeds).loss
        shuffled = model(**batch, audio_embeds=embeds.roll(1, dims=0)).loss
        other = model(**batch, audio_embeds=embeds * 0 + 1).logits
        assert not torch.allclose(model(**batch, audio_embeds=embeds).logits, other)
    assert matched < shuffled


def test_load_run_reproduces_logits_and_audio_matters(tiny_runs):
    model, tok, info = load_run(tiny_runs.stage2)
    assert info["stage"] == 2
    rows = _rows(tiny_runs.build)
    collate = MV4AllCollator.for_model(tok, model.config, audio_features=AudioFeatureReader.for_model(
        model.get_base_model(), tiny_runs.build.corpus))
    batch = collate(rows[:2])
    trained = tiny_runs.model2.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, trained(**batch).logits)
        changed = dict(batch, input_features=batch["input_features"].flip(0))
        assert not torch.allclose(model(**changed).logits, model(**batch).logits)


def test_generation_for_every_input_combination(tiny_runs):
    from mv4all.inputs import parse_combination

    model, tok, _ = load_run(tiny_runs.stage2)
    row = _rows(tiny_runs.build, n=1)[0]
    assert row["genres"] and row["mv_type"] and row["lyrics_understanding"]
    reader = AudioFeatureReader.for_model(model.get_base_model(), tiny_runs.build.corpus)
    audio_id = model.config.audio_token_id
    prompts, logits = {}, {}
    for combo in all_combinations():
        used = parse_combination(combo)
        collate = MV4AllCollator.for_model(tok, model.config, combination=combo, audio_features=reader, inference=True)
        batch = collate([row])
        ids = batch["input_ids"][0].tolist()
        assert ids.count(audio_id) == (model.config.num_audio_tokens if 1 in used else 0), combo
        assert ("input_features" in batch) == (1 in used)
        # each chosen modality is rendered with the row's value, each other one is absent
        text = tok.decode(ids)
        for number, line in ((2, f"Genres: {', '.join(row['genres'])}\n"), (3, f"MV type: {row['mv_type']}\n"),
                             (4, f"Lyrics understanding: {row['lyrics_understanding'].strip()}\n")):
            assert (line in text) == (number in used), (combo, line)
        prompts[combo] = tuple(ids)
        with torch.no_grad():
            logits[combo] = model(**batch).logits[0, -1]
            out = model.generate(**batch, max_new_tokens=8, min_new_tokens=8, do_sample=False)
        assert out.shape[1] - len(ids) == 8, combo
    assert len(set(prompts.values())) == len(prompts)  # every combination renders a different prompt
    combos = list(logits)
    for i, a in enumerate(combos):  # ... and the model's next-token distribution differs with it
        for b in combos[i + 1 :]:
            assert not torch.allclose(logits[a], logits[b], atol=1e-4), (a, b)


@pytest.fixture(scope="module")
def embeddings(tiny_runs) -> Path:
    """`mv4all embed` over the sample build with the tiny encoder."""
    out = tiny_runs.root / "cache"
    result = CliRunner().invoke(app, [
        "embed", "--dataset", str(tiny_runs.build.out), "--audio-root", str(tiny_runs.build.corpus),
        "--encoder", str(tiny_runs.tiny["audio_encoder"]), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return out


def test_embed_cache_matches_on_the_fly(tiny_runs, embeddings):
    out = embeddings
    cache = EmbeddingCache(out)
    index = json.loads((out / "index.json").read_text())
    info = json.loads((tiny_runs.stage1 / "run.json").read_text())
    assert index["encoder"]["sha256"] == info["audio_encoder"]["sha256"] == cache.encoder_sha256
    assert index["clips_per_audio"] == 3 and index["clip_sampler"] == "imagebind"
    assert len(cache) == 18  # every id of both configs, train and test
    model, tok, _ = load_run(tiny_runs.stage1)
    cache.check(model, info["audio_encoder"]["sha256"])
    model.train()
    rows = _rows(tiny_runs.build, "music_caption", 2)
    kw = dict(combination="1", instruction=CAPTION_INSTRUCTION, target_field="music_caption")
    cached = MV4AllCollator.for_model(tok, model.config, audio_embeddings=cache, **kw)(rows)
    live = MV4AllCollator.for_model(tok, model.config, **kw,
                                    audio_features=AudioFeatureReader.for_model(model, tiny_runs.build.corpus))(rows)
    assert "audio_embeds" in cached and "input_features" in live
    torch.testing.assert_close(model(**cached).loss, model(**live).loss, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="does not match"):
        cache.check(model, "0" * 64)


def test_training_from_the_embedding_cache_needs_no_audio(tiny_runs, embeddings, tmp_path):
    kw = dict(max_steps=3, save_steps=100)
    live = sft.train(TINY_YAML, 1, tiny_runs.common(output_dir=str(tmp_path / "live"), **kw))
    # no audio folder at all: every audio embedding must come from the cache
    cached = sft.train(TINY_YAML, 1, tiny_runs.common(output_dir=str(tmp_path / "cached"), embeddings=str(embeddings),
                                                      audio_root=str(tmp_path / "no-audio-here"), **kw))
    assert len(_losses(cached)) == 3
    assert _losses(cached) == pytest.approx(_losses(live), abs=1e-4)
    info = json.loads((cached / "run.json").read_text())
    assert info["embeddings"] and (cached / info["embeddings"]).resolve() == embeddings.resolve()
    assert json.loads((live / "run.json").read_text())["embeddings"] is None


def test_interrupted_run_resumes_to_the_same_adapter(tiny_runs):
    from safetensors.torch import load_file

    kw = dict(init_from=str(tiny_runs.stage1), max_steps=6, save_steps=3, embeddings=None)
    full = sft.train(TINY_YAML, 2, tiny_runs.common(output_dir=str(tiny_runs.root / "full"), **kw))
    part = tiny_runs.root / "part"
    sft.train(TINY_YAML, 2, tiny_runs.common(output_dir=str(part), **kw), callbacks=[StopAfter(3)])
    assert not (part / "run.json").exists() and (part / "checkpoints" / "checkpoint-3").is_dir()
    with pytest.raises(FileExistsError):
        sft.train(TINY_YAML, 2, tiny_runs.common(output_dir=str(part), **kw))
    sft.train(TINY_YAML, 2, tiny_runs.common(output_dir=str(part), resume=True, **kw))
    a = load_file(str(full / "stage2" / "adapter_model.safetensors"))
    b = load_file(str(part / "stage2" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)


def test_paper_recipe_on_the_meta_device():
    from transformers import LlamaConfig

    from mv4all.model import MV4AllConfig, MV4AllForConditionalGeneration

    vicuna = LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, intermediate_size=11008,
                         vocab_size=32001)
    counts = {}
    for stage in (1, 2):
        cfg = sft.load_config(PAPER_YAML, stage, {"inputs": "2+3"} if stage == 2 else None)
        with torch.device("meta"):
            model = MV4AllForConditionalGeneration(MV4AllConfig(
                text_config=vicuna, audio_encoder=cfg["audio_encoder"], tokens_per_audio=cfg["tokens_per_audio"],
                projector_type=cfg["projector_type"], audio_token_id=32000))
        model = sft.prepare_model(model, cfg)
        counts[stage] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        args = sft.sft_config_kwargs(cfg, "x")
        assert args["learning_rate"] == 1e-4 and args["warmup_steps"] == 0.1
        assert (args["adam_beta1"], args["adam_beta2"], args["weight_decay"]) == (0.9, 0.95, 0.001)
        assert args["per_device_train_batch_size"] == 2 and args["seed"] == 42
        assert args["num_train_epochs"] == (5 if stage == 1 else 2)
    assert counts == {1: 4_198_400, 2: 37_752_832}
    cfg1, cfg2 = sft.load_config(PAPER_YAML, 1), sft.load_config(PAPER_YAML, 2, {"inputs": "3+1+2"})
    assert cfg1["language_model"] == "lmsys/vicuna-7b-v1.5" and cfg1["audio_encoder"] == "imagebind"
    assert (cfg1["dataset_config"], cfg1["target_field"], cfg1["instruction"]) == (
        "music_caption", "music_caption", CAPTION_INSTRUCTION)
    assert cfg2["dataset_config"] == "mv_description" and cfg2["lora"] == {"r": 32, "alpha": 32, "dropout": 0.1}
    assert cfg2["output_dir"] == "runs/paper/stage2-1+2+3" and cfg2["init_from"] == cfg1["output_dir"]
    zero2 = (REPO / "train" / "configs" / "accelerate_zero2.yaml").read_text()
    assert "zero_stage: 2" in zero2 and "DEEPSPEED" in zero2


def test_accelerate_launch_stage1(tiny_runs):
    out = tiny_runs.root / "launched"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
           "--mixed_precision", "no", str(REPO / "train" / "sft.py"), "--config", str(TINY_YAML), "--stage", "1",
           "--max-steps", "2", "--output-dir", str(out), "--dataset", str(tiny_runs.build.out),
           "--set", f"audio_root={tiny_runs.build.corpus}", "--set", f"language_model={tiny_runs.tiny['llm']}",
           "--set", f"audio_encoder_path={tiny_runs.tiny['audio_encoder']}", "--set", "disable_tqdm=true"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "run.json").read_text())["global_step"] == 2
    model, _, _ = load_run(out)
    assert model.config.audio_encoder == "tiny"


def test_config_keys_are_checked_like_trl_parser(tmp_path):
    """A typo or an old key never trains silently with a default: each is refused with the key to use."""
    import yaml

    cfg = sft.load_config(PAPER_YAML, 2, {"learning_rate": 3e-4, "logging_steps": 7})
    kwargs = sft.sft_config_kwargs(cfg, "x")
    assert kwargs["learning_rate"] == 3e-4 and kwargs["logging_steps"] == 7  # SFTConfig fields pass through
    assert "lora" not in kwargs and "dataset" not in kwargs  # ours stay ours
    for key, value, message in (("learning_rat", 1e-4, "did you mean `learning_rate`"),
                                ("gradient_checkpointing", True, "now `activation_checkpointing`"),
                                ("batch_size", 4, "now `per_device_train_batch_size`"),
                                ("bf16", True, "follows from `precision`"),
                                ("remove_unused_columns", True, "fixed by the recipe")):
        with pytest.raises(ValueError, match=message):
            sft.load_config(PAPER_YAML, 1, {key: value})
    raw = yaml.safe_load(PAPER_YAML.read_text())
    raw["stage2"]["warmup_ratio"] = 0.1  # in a stage section too, with the file named
    bad = tmp_path / "old.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"old.yaml stage2: `warmup_ratio` is now `warmup_steps`"):
        sft.load_config(bad, 2)
