"""The path a GPU researcher walks, simulated on a CPU: casts, precision, checkpoints, moved runs, lengths.

What the accelerator stack does is reproduced here the way it happens there: DeepSpeed casts the
whole wrapped module to bf16 in place before training (a callback does the same at train begin),
a published run arrives on another machine with only the files ``push model`` sends, and
Vicuna-style checkpoints ship only ``tokenizer.model``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback
from typer.testing import CliRunner

from mv4all.cli import app
from mv4all.model import load_run
from mv4all.model.integrity import FrozenWeightsChanged
from mv4all.model.run import weights_sha256
from tests.conftest import TINY_YAML, StopAfter
from train import sft  # noqa: E402

runner = CliRunner()


class WholeModuleCast(TrainerCallback):
    """What DeepSpeed's engine does with bf16 on: every parameter of the module, frozen ones too, cast in place."""

    def __init__(self, dtype=torch.bfloat16, tamper: bool = False):
        self.dtype, self.tamper = dtype, tamper

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        model.to(self.dtype)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.tamper:  # a real change to a frozen encoder weight (not a cast)
            with torch.no_grad():
                next(model.get_audio_encoder().parameters()).view(-1)[0] += 0.5


def _encoder(tiny_runs):
    from mv4all.model import load_audio_encoder

    return load_audio_encoder("tiny", tiny_runs.tiny["audio_encoder"])


def _dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- mixed precision under DeepSpeed


def test_stage1_survives_a_whole_module_bf16_cast(tiny_runs):
    out = tiny_runs.root / "cast-bf16"
    run = sft.train(TINY_YAML, 1, tiny_runs.common(output_dir=str(out), max_steps=3), callbacks=[WholeModuleCast()])
    info = json.loads((run / "run.json").read_text())
    # The recorded encoder hash is of the weights the user supplied (fp32), not of the cast copy.
    assert info["audio_encoder"]["sha256"] == weights_sha256(_encoder(tiny_runs))
    model, _, _ = load_run(run)  # the fp32 encoder is accepted
    assert next(model.get_audio_encoder().parameters()).dtype == torch.float32
    assert (run / "stage1" / "projector.safetensors").is_file()


def test_a_real_change_to_a_frozen_weight_is_still_caught(tiny_runs):
    out = tiny_runs.root / "cast-tampered"
    with pytest.raises(FrozenWeightsChanged, match="audio_encoder"):
        sft.train(TINY_YAML, 1, tiny_runs.common(output_dir=str(out), max_steps=2),
                  callbacks=[WholeModuleCast(tamper=True)])
    assert not (out / "run.json").exists()


def test_stage1_checkpoints_hold_only_the_projector_and_its_optimizer_state(tiny_runs):
    projector = tiny_runs.model1.model.projector
    projector_bytes = sum(p.numel() * 4 for p in projector.parameters())
    lm_bytes = (tiny_runs.tiny["llm"] / "model.safetensors").stat().st_size
    checkpoints = sorted((tiny_runs.stage1 / "checkpoints").glob("checkpoint-*"))
    assert checkpoints
    for ckpt in checkpoints:
        names = {p.name for p in ckpt.iterdir()}
        assert "projector.safetensors" in names and not names & {"model.safetensors", "pytorch_model.bin"}
        # weights + AdamW moments = 3x the projector; the rest is small bookkeeping (rng, args, state)
        weights = (ckpt / "projector.safetensors").stat().st_size + (ckpt / "optimizer.pt").stat().st_size
        assert weights <= 4 * projector_bytes + 8_192, (ckpt.name, weights, projector_bytes)
        assert _dir_bytes(ckpt) < lm_bytes / 4, (ckpt.name, _dir_bytes(ckpt), lm_bytes)
    print(f"stage-1 checkpoint: {_dir_bytes(checkpoints[-1])} bytes; projector {projector_bytes}; LLM {lm_bytes}")


def test_stage1_resumes_from_its_projector_only_checkpoint(tiny_runs):
    from safetensors.torch import load_file

    kw = dict(max_steps=6, save_steps=3)
    full = sft.train(TINY_YAML, 1, tiny_runs.common(output_dir=str(tiny_runs.root / "s1-full"), **kw))
    part = tiny_runs.root / "s1-part"
    sft.train(TINY_YAML, 1, tiny_runs.common(output_dir=str(part), **kw), callbacks=[StopAfter(3)])
    assert not (part / "run.json").exists()
    sft.train(TINY_YAML, 1, tiny_runs.common(output_dir=str(part), resume=True, **kw))
    a = load_file(str(full / "stage1" / "projector.safetensors"))
    b = load_file(str(part / "stage1" / "projector.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- precision


def test_precision_means_what_it_says(tiny_runs):
    cfg = sft.load_config(TINY_YAML, 1, tiny_runs.common(precision="bf16"))
    kwargs = sft.sft_config_kwargs(cfg, "x")
    assert kwargs["bf16"] and not kwargs["fp16"]  # honoured on a CPU too (autocast), not silently fp32
    # fp32 trains and loads fp32
    info = json.loads((tiny_runs.stage1 / "run.json").read_text())
    assert info["precision"] == "fp32"
    model, _, _ = load_run(tiny_runs.stage1)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    # bf16: the frozen LLM is bf16 during training and after loading; the trainable projector fp32
    run, trained, _ = sft.train(TINY_YAML, 1, tiny_runs.common(output_dir=str(tiny_runs.root / "bf16"), max_steps=2,
                                                               precision="bf16"), return_model=True)
    assert trained.model.language_model.embed_tokens.weight.dtype == torch.bfloat16
    assert json.loads((run / "run.json").read_text())["precision"] == "bf16"
    model, _, _ = load_run(run)
    assert model.model.language_model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    assert model.model.projector.linear_1.weight.dtype == torch.float32
    model, _, _ = load_run(run, dtype="fp32")  # unless told otherwise
    assert model.model.language_model.layers[0].self_attn.q_proj.weight.dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        load_run(run, dtype="fp8")


# --------------------------------------------------------------------------- generation length


def _train_targets(tiny_runs, field="mv_description_text"):
    from mv4all.data import load_split

    return list(load_split(tiny_runs.build.out, "mv_description", "train")[field])


def test_run_generation_config_covers_the_longest_target(tiny_runs):
    from mv4all.model.run import load_tokenizer

    tok = load_tokenizer(str(tiny_runs.stage2 / "tokenizer"))
    longest = max(len(tok(t, add_special_tokens=False).input_ids) for t in _train_targets(tiny_runs))
    gen = json.loads((tiny_runs.stage2 / "generation_config.json").read_text())
    assert gen["max_new_tokens"] >= longest > 256  # the old fixed default cut every target
    assert gen["mv4all"]["repetition_penalty"] == 1.0 and gen["mv4all"]["no_repeat_ngram_size"] == 0
    assert "repetition_penalty" not in gen and "no_repeat_ngram_size" not in gen
    stats = json.loads((tiny_runs.stage2 / "run.json").read_text())["target_tokens"]
    assert stats["target_max"] >= longest and stats["target_p50"] <= stats["target_p99"] <= stats["target_max"]
    print(f"target tokens: {stats}; max_new_tokens {gen['max_new_tokens']}")


def test_repetition_penalty_spares_the_prompt():
    from transformers import LogitsProcessorList

    from mv4all.describe import Decoding

    prompt = torch.tensor([[5, 6, 7]])
    generated = torch.tensor([[5, 6, 7, 9]])
    (processor,) = Decoding(repetition_penalty=2.0).logits_processors(prompt.shape[1])
    scores = LogitsProcessorList([processor])(generated, torch.ones(1, 12))
    assert scores[0, 9] == 0.5  # a generated token is penalised
    assert scores[0, 5] == scores[0, 6] == scores[0, 7] == 1.0  # prompt tokens are not
    assert Decoding().logits_processors(3) == []


def test_full_length_answer_fits_the_run_limit(tiny_runs):
    """A complete answer for a test row ends on "###" before the run's ``max_new_tokens``.

    A 20-step tiny model loops instead of finishing (it has not learned the format), so the answer is
    the row's reference, forced token by token through the same ``generate`` call ``describe`` makes
    (prompt, stop string, the run's limit). The old fixed limits (256, 512) cut it.
    """
    from mv4all.describe import STOP, Describer, load_split
    from mv4all.model import MV4AllCollator
    from mv4all.model.embedding_cache import AudioFeatureReader

    describer = Describer.from_run(tiny_runs.stage2, device="cpu")
    limit = describer.decoding.max_new_tokens
    tok, config = describer.tokenizer, describer.base.config
    rows = [dict(r) for r in load_split(tiny_runs.build.out, "test")]
    teacher = MV4AllCollator.for_model(tok, config, combination=describer.inputs, max_length=None)
    row = max(rows, key=lambda r: sum(t != -100 for t in teacher.encode(r)[1]))  # the longest test target
    answer = [t for t in teacher.encode(row)[1] if t != -100]
    assert len(answer) > 512
    row["input_features"] = AudioFeatureReader.for_model(describer.base, tiny_runs.build.corpus)(row)
    batch = describer._collator()([row])
    start = batch["input_ids"].shape[1]

    def forced(_, ids):
        step = ids.shape[0] - start
        return [answer[step]] if step < len(answer) else [tok.eos_token_id]

    with torch.inference_mode():
        out = describer.model.generate(**batch, **describer.decoding.generate_kwargs(), prefix_allowed_tokens_fn=forced,
                                       stop_strings=[STOP], tokenizer=tok, pad_token_id=tok.pad_token_id,
                                       eos_token_id=tok.eos_token_id)
    new = out[0, start:]
    text = tok.decode(new, skip_special_tokens=True)
    assert text.rstrip().endswith(STOP) and len(new) < limit, (len(new), limit)
    assert text.split(STOP)[0].strip() == row["mv_description_text"].strip()
    print(f"longest test answer {len(new)} tokens, run limit {limit}")


def test_describe_never_writes_into_the_run(tiny_runs, tmp_path):
    run = tmp_path / "readonly-run"
    shutil.copytree(tiny_runs.stage2, run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / "generation_config.json").unlink()  # a run from before generation configs
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    for p in [run, *run.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)
    try:
        wav = sorted(tiny_runs.build.corpus.glob("audios/*"))[0]
        result = runner.invoke(app, ["describe", str(wav), "--model", str(run), "--max-new-tokens", "6",
                                     "--device", "cpu", "--base-model", str(tiny_runs.tiny["llm"]),
                                     "--audio-encoder", str(tiny_runs.tiny["audio_encoder"])])
        assert result.exit_code == 0, result.output
        assert "saved" not in result.output
    finally:
        for p in [run, *run.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before


# --------------------------------------------------------------------------- moved and published runs


def _published_copy(run: Path, dest: Path) -> list[str]:
    result = runner.invoke(app, ["push", "model", str(run), "--repo-id", "me/run", "--dry-run"])
    assert result.exit_code == 0, result.output
    files = [line.strip() for line in result.output.splitlines() if line.strip() and not line.startswith(
        ("would upload", "not part of")) and (run / line.strip()).is_file()]
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run / rel, dest / rel)
    return files


def test_a_moved_run_describes_with_the_encoder_given(tiny_runs, tmp_path):
    (run_dir := tiny_runs.root / "with-junk").mkdir(exist_ok=True)
    shutil.copytree(tiny_runs.stage2, run_dir, dirs_exist_ok=True)
    (run_dir / ".env").write_text("OPENAI_API_KEY=sk-test\n")
    moved = tmp_path / "elsewhere" / "deeper" / "run"
    files = _published_copy(run_dir, moved)
    assert ".env" not in files and not any(f.startswith("checkpoints") for f in files)
    assert {"run.json", "generation_config.json", "stage2/adapter_model.safetensors"} <= set(files)
    wav = str(sorted(tiny_runs.build.corpus.glob("audios/*"))[0])
    common = ["--genre", "pop", "--mv-type", "Animation", "--max-new-tokens", "24", "--device", "cpu"]
    here = runner.invoke(app, ["describe", wav, "--model", str(tiny_runs.stage2), *common])
    assert here.exit_code == 0, here.output
    there = runner.invoke(app, ["describe", wav, "--model", str(moved), *common,
                                "--audio-encoder", str(tiny_runs.tiny["audio_encoder"]),
                                "--base-model", str(tiny_runs.tiny["llm"])])
    assert there.exit_code == 0, there.output
    text = lambda out: out.strip().splitlines()[-1]  # noqa: E731 - the description is the last line
    assert text(there.output) == text(here.output)
    # Without the encoder: one line naming the option, no traceback.
    missing = runner.invoke(app, ["describe", wav, "--model", str(moved), *common,
                                  "--base-model", str(tiny_runs.tiny["llm"])])
    assert missing.exit_code == 2 and "--audio-encoder" in missing.output and "Traceback" not in missing.output
    missing = runner.invoke(app, ["describe", wav, "--model", str(moved), *common,
                                  "--audio-encoder", str(tiny_runs.tiny["audio_encoder"])])
    assert missing.exit_code == 2 and "--base-model" in missing.output
    # The environment supplies them too.
    env = {"MV4ALL_AUDIO_ENCODER": str(tiny_runs.tiny["audio_encoder"]),
           "MV4ALL_BASE_MODEL": str(tiny_runs.tiny["llm"])}
    by_env = runner.invoke(app, ["describe", wav, "--model", str(moved), *common], env=env)
    assert by_env.exit_code == 0 and text(by_env.output) == text(here.output)


def test_wrong_base_weights_are_refused(tiny_runs, tmp_path):
    info = json.loads((tiny_runs.stage1 / "run.json").read_text())
    assert re.fullmatch(r"[0-9a-f]{64}", info["base_model"]["sha256"])
    other = tmp_path / "other-llm"
    shutil.copytree(tiny_runs.tiny["llm"], other)
    from safetensors.torch import load_file, save_file

    state = load_file(str(other / "model.safetensors"))
    state["model.norm.weight"] = state["model.norm.weight"] + 1
    save_file(state, str(other / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="base model"):
        load_run(tiny_runs.stage1, language_model=str(other))
    load_run(tiny_runs.stage1, language_model=str(other), check_base_model=False)


# --------------------------------------------------------------------------- tokenizer, paper config, memory


def test_a_sentencepiece_only_tokenizer_loads(tmp_path):
    import sentencepiece as spm

    from mv4all.model.run import load_tokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"a slow ballad with warm piano chords and a city at night {i}" for i in range(200)))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "sp"), vocab_size=64,
                                   model_type="bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    folder = tmp_path / "vicuna-like"
    folder.mkdir()
    shutil.move(tmp_path / "sp.model", folder / "tokenizer.model")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}))
    assert {p.name for p in folder.iterdir()} == {"tokenizer.model", "tokenizer_config.json"}
    tok = load_tokenizer(str(folder))
    ids = tok("warm piano chords", add_special_tokens=False).input_ids
    assert tok.decode(ids) == "warm piano chords"
    assert len(tok("<audio>", add_special_tokens=False).input_ids) == 1


def test_paper_config_as_a_user_runs_it():
    from transformers import LlamaConfig

    from mv4all.model import LORA_TARGET_MODULES
    from mv4all.model.memory import GB, estimate_training_memory

    cfg1, cfg2 = sft.load_config(Path(sft.__file__).parent / "configs" / "paper.yaml", 1), \
        sft.load_config(Path(sft.__file__).parent / "configs" / "paper.yaml", 2)
    assert cfg1["embeddings"] and cfg1["clip_sampler"] == "pytorchvideo-0.1.5"
    assert cfg2["activation_checkpointing"] is True and not cfg1["activation_checkpointing"]
    kwargs = sft.sft_config_kwargs(cfg2, "x")
    assert kwargs["activation_checkpointing"] is True
    assert kwargs["activation_checkpointing_kwargs"] == {"use_reentrant": False}
    assert sft.sft_config_kwargs(cfg1, "x")["activation_checkpointing"] is False  # TRL's default is on: say no
    zero2 = (Path(sft.__file__).parent / "configs" / "accelerate_zero2.yaml").read_text()
    assert re.search(r"^num_processes: 2$", zero2, re.M)
    pyproject = (Path(sft.__file__).parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^deepspeed = \["deepspeed', pyproject, re.M) and '"sentencepiece' in pyproject
    vicuna = LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, intermediate_size=11008,
                         vocab_size=32001)
    common = dict(encoder_params=86_235_648, projector_params=1024 * 4096 + 4096, weight_dtype=torch.bfloat16,
                  sequence_length=2048, batch_size=2, lora_r=32, lora_pattern=LORA_TARGET_MODULES)
    off = estimate_training_memory(vicuna, gradient_checkpointing=False, **common)
    on = estimate_training_memory(vicuna, gradient_checkpointing=True, **common)
    # 6.74 B LLM parameters in bf16; LoRA r=32 on q/k/v/o of 32 layers = 32 * 4 * 32 * (4096 + 4096)
    assert off.total_params - 86_235_648 - 4_198_400 == 6_738_423_808
    assert off.trainable_params == 4_198_400 + 32 * 4 * 32 * 8192
    assert 12.5 * GB < off.weights < 13.0 * GB
    card = 48 * 10**9  # an A6000 / L40S
    assert not off.fits(card) and on.fits(card)  # stage 2 needs checkpointing on a 48 GB card
    assert off.total > 40 * GB and on.total < 20 * GB
    print(off.summary(), "|", on.summary())


def test_training_refuses_before_loading_when_memory_is_short(tiny_runs, monkeypatch):
    import mv4all.model.memory as memory
    import mv4all.model.run as run_module

    monkeypatch.setattr(memory, "visible_device_memory", lambda: ("a 1 MiB test device", 1 << 20))
    loaded = []
    monkeypatch.setattr(run_module, "build_model", lambda *a, **k: loaded.append(1))
    out = tiny_runs.root / "too-big"
    with pytest.raises(MemoryError, match="activation_checkpointing"):
        sft.train(TINY_YAML, 1, tiny_runs.common(output_dir=str(out), max_steps=1))
    assert not loaded and not (out / "run.json").exists()


def test_estimate_counts_real_parameters(tiny_runs):
    """The meta-device count equals the parameters of the real model the run loaded."""
    from transformers import AutoConfig

    from mv4all.model.memory import estimate_training_memory

    model = tiny_runs.model1
    lm = model.model.language_model
    enc = sum(p.numel() for p in model.get_audio_encoder().parameters())
    proj = sum(p.numel() for p in model.model.projector.parameters())
    est = estimate_training_memory(AutoConfig.from_pretrained(tiny_runs.tiny["llm"]), encoder_params=enc,
                                   projector_params=proj, weight_dtype=torch.float32, sequence_length=16, batch_size=1)
    real_lm = (sum(p.numel() for p in lm.parameters())
               + model.lm_head.weight.numel() * (not model.config.tie_word_embeddings))
    vocab_rows = (model.get_input_embeddings().weight.shape[0]
                  - AutoConfig.from_pretrained(tiny_runs.tiny["llm"]).vocab_size)
    hidden = model.config.text_config.hidden_size
    extra = vocab_rows * hidden * (1 if model.config.tie_word_embeddings else 2)  # the <audio> rows
    assert est.total_params == real_lm - extra + enc + proj
    assert est.trainable_params == proj
    if os.environ.get("CI"):
        print(est.summary())
