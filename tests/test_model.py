"""The model package on tiny configs: save/load, audio injection, freezing, generation,
collation, LoRA, a TRL SFTTrainer run and the paper-scale parameter counts (meta device)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

from mv4all.inputs import AUDIO_PLACEHOLDER, CAPTION_INSTRUCTION, MV_INSTRUCTION  # noqa: E402
from mv4all.model import (  # noqa: E402
    IGNORE_INDEX,
    MV4AllCollator,
    MV4AllConfig,
    MV4AllForConditionalGeneration,
    MV4AllProcessor,
    add_audio_token,
    build_audio_encoder,
    load_audio_encoder,
)

DESCRIPTIONS = [
    "**Overview:** A band plays on a dark stage under red lights.\n1. **Intro:** The singer steps forward.",
    "**Overview:** Dancers move through a neon city at night.\n1. **Chorus:** The camera spins around them.",
    "**Overview:** Waves roll over a quiet beach at dawn.\n1. **Verse:** Birds cross a pale sky.",
    "**Overview:** Cartoon animals march through a colourful forest.\n1. **Bridge:** The trees start to dance.",
]


def _row(i: int) -> dict:
    return {
        "id": f"{i:016d}",
        "genres": ["rock", "indie"] if i % 2 else ["pop"],
        "mv_type": ["Live Performance", "Dance Performance", "Nature/Scenic", "Animation"][i % 4],
        "lyrics_understanding": "A song about leaving home and finding light." if i % 3 else "",
        "mv_description_text": DESCRIPTIONS[i % 4],
        "music_caption": "A bright pop song with a steady drum beat.",
        "instruction": MV_INSTRUCTION,
    }


ROWS = [_row(i) for i in range(4)]


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from mv4all.inputs import render_prompt

    corpus = [render_prompt(r, "1+2+3+4", MV_INSTRUCTION, r["mv_description_text"]).text for r in ROWS]
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(corpus * 3, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    add_audio_token(tok)  # the way a real (Vicuna) tokenizer gets it
    return tok


def _text_config(tok, **kw) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **kw,
    )


def _config(tok, **kw) -> MV4AllConfig:
    return MV4AllConfig(
        text_config=_text_config(tok),
        audio_encoder="tiny",
        audio_token_id=tok.convert_tokens_to_ids(AUDIO_PLACEHOLDER),
        **kw,
    )


def _model(config, seed: int = 0) -> MV4AllForConditionalGeneration:
    torch.manual_seed(seed)
    return MV4AllForConditionalGeneration(config).eval()


def _features(seed: int, clips: int = 3) -> torch.Tensor:
    return torch.randn(clips, 1, 128, 204, generator=torch.Generator().manual_seed(seed))


FEATURES = {r["id"]: _features(i) for i, r in enumerate(ROWS)}


def _collator(tok, config, **kw) -> MV4AllCollator:
    kw.setdefault("audio_features", lambda row: FEATURES[row["id"]])
    return MV4AllCollator.for_model(tok, config, **kw)


# --------------------------------------------------------------------------- model


def test_save_and_from_pretrained_reproduce_logits(tokenizer, tmp_path):
    config = _config(tokenizer)
    model = _model(config)
    batch = _collator(tokenizer, config)(ROWS[:2])
    with torch.no_grad():
        before = model(**batch).logits
    model.save_pretrained(tmp_path)
    reloaded = MV4AllForConditionalGeneration.from_pretrained(tmp_path).eval()
    auto = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, before)
        assert torch.equal(auto(**batch).logits, before)
    assert reloaded.config.audio_encoder == "tiny" and reloaded.config.num_audio_tokens == 1
    assert not any(p.requires_grad for p in reloaded.model.audio_encoder.parameters())


def test_audio_changes_logits_and_cached_embeddings_equal_features(tokenizer):
    config = _config(tokenizer)
    model = _model(config)
    batch = _collator(tokenizer, config)(ROWS[:2])
    with torch.no_grad():
        logits = model(**batch).logits
        other = dict(batch, input_features=torch.flip(batch["input_features"], dims=[0]))
        assert not torch.allclose(model(**other).logits, logits)
        cached = model.model.encode_audio(batch["input_features"])  # what `mv4all embed` stores
        assert cached.shape == (2, 3, model.model.audio_encoder.output_dim)
        embeds = {r["id"]: c for r, c in zip(ROWS[:2], cached)}
        from_cache = _collator(tokenizer, config, audio_features=None, audio_embeddings=embeds)(ROWS[:2])
        assert set(from_cache) == {"input_ids", "attention_mask", "labels", "audio_embeds"}
        assert torch.allclose(model(**from_cache).logits, logits, atol=1e-6)


def test_prompt_and_audio_count_must_agree(tokenizer):
    config = _config(tokenizer)
    model = _model(config)
    batch = _collator(tokenizer, config)(ROWS[:2])
    with torch.no_grad(), pytest.raises(ValueError, match="<audio> tokens"):
        model(**dict(batch, input_features=batch["input_features"][:1]))
    with torch.no_grad(), pytest.raises(ValueError, match="<audio> tokens"):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])  # audio forgotten


def test_encoder_frozen_and_in_eval_under_train(tokenizer):
    config = _config(tokenizer)
    model = _model(config).train()
    encoder = model.model.audio_encoder
    assert model.training and model.model.language_model.training
    assert not encoder.training and not any(m.training for m in encoder.modules())
    assert not any(p.requires_grad for p in encoder.parameters())
    batch = _collator(tokenizer, config)(ROWS[:2])
    model(**batch).loss.backward()
    assert all(p.grad is None for p in encoder.parameters())
    assert model.model.projector.linear_1.weight.grad is not None


def test_generate_with_audio_returns_text(tokenizer):
    config = _config(tokenizer)
    model = _model(config)
    batch = _collator(tokenizer, config, inference=True)(ROWS[:2])
    assert "labels" not in batch and batch["attention_mask"][:, -1].all()  # left padded
    special = [tokenizer.convert_tokens_to_ids(t) for t in ("<unk>", "<s>", "</s>", "<pad>", AUDIO_PLACEHOLDER)]
    kwargs = dict(max_new_tokens=6, do_sample=False, suppress_tokens=special, pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        out = model.generate(**batch, **kwargs)
        cached = {k: v for k, v in batch.items() if k != "input_features"}
        cached["audio_embeds"] = model.model.encode_audio(batch["input_features"])
        out_cached = model.generate(**cached, **kwargs)
    new = out[:, batch["input_ids"].shape[1] :]
    assert new.shape == (2, 6)
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    assert all(t.strip() for t in texts)
    assert torch.equal(out_cached, out)


# --------------------------------------------------------------------------- collator


def test_collator_masks_everything_but_the_output(tokenizer):
    config = _config(tokenizer)
    batch = _collator(tokenizer, config)(ROWS[:3])
    audio_id = tokenizer.convert_tokens_to_ids(AUDIO_PLACEHOLDER)
    assert batch["input_features"].shape == (3, 3, 1, 128, 204)
    for i, row in enumerate(ROWS[:3]):
        ids, labels, mask = batch["input_ids"][i], batch["labels"][i], batch["attention_mask"][i]
        n = int(mask.sum())
        assert ids[0] == tokenizer.bos_token_id and mask[:n].all() and not mask[n:].any()  # right padded
        assert (labels[n:] == IGNORE_INDEX).all()
        target = labels[labels != IGNORE_INDEX]
        assert tokenizer.decode(target) == row["mv_description_text"] + "\n###"
        first = int((labels != IGNORE_INDEX).nonzero()[0])
        assert torch.equal(ids[first:n], labels[first:n])  # output positions carry their own ids
        prompt = tokenizer.decode(ids[:first])
        assert prompt.startswith("<s>Music: <audio>\nGenres: ") and prompt.endswith("### Assistant:")
        assert MV_INSTRUCTION in prompt and row["mv_type"] in prompt
        assert int((ids == audio_id).sum()) == 1


def test_collator_without_music_and_with_other_instruction(tokenizer):
    config = _config(tokenizer)
    batch = _collator(tokenizer, config, combination="2+3", instruction=CAPTION_INSTRUCTION)(ROWS[:2])
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert not (batch["input_ids"] == tokenizer.convert_tokens_to_ids(AUDIO_PLACEHOLDER)).any()
    text = tokenizer.decode(batch["input_ids"][0])
    assert "Music:" not in text and "Lyrics" not in text and CAPTION_INSTRUCTION in text
    with torch.no_grad():
        assert torch.isfinite(_model(config)(**batch).loss)
    caption_row = {"id": ROWS[0]["id"], "music_caption": "A calm song.", "instruction": CAPTION_INSTRUCTION}
    stage1 = _collator(tokenizer, config, combination="1", target_field="music_caption")([caption_row])
    labels = stage1["labels"][0]
    assert tokenizer.decode(labels[labels != IGNORE_INDEX]) == "A calm song.\n###"


def test_collator_truncates_with_a_warning_and_reports_missing_audio(tokenizer):
    config = _config(tokenizer)
    full = _collator(tokenizer, config)(ROWS[:1])["input_ids"].shape[1]
    with pytest.warns(UserWarning, match="truncated"):
        batch = _collator(tokenizer, config, max_length=full - 5)(ROWS[:1])
    assert batch["input_ids"].shape[1] == full - 5
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="audio placeholders"):
        _collator(tokenizer, config, max_length=2)(ROWS[:1])
    with pytest.raises(KeyError, match="mv4all embed"):
        _collator(tokenizer, config, audio_features=None, audio_embeddings={})(ROWS[:1])
    with pytest.raises(ValueError, match="no audio"):
        MV4AllCollator(tokenizer)(ROWS[:1])


@pytest.mark.parametrize("mode,clips,tokens", [(1, 3, 1), (3, 3, 3), ("N", 15, 15)])
def test_tokens_per_audio_modes(tokenizer, mode, clips, tokens):
    config = _config(tokenizer, tokens_per_audio=mode)
    assert (config.clips_per_audio, config.num_audio_tokens) == (clips, tokens)
    model = _model(config)
    feats = {r["id"]: _features(i, clips) for i, r in enumerate(ROWS[:2])}
    batch = _collator(tokenizer, config, audio_features=lambda r: feats[r["id"]])(ROWS[:2])
    assert int((batch["input_ids"][0] == config.audio_token_id).sum()) == tokens
    with torch.no_grad():
        out = model(**batch)
    assert out.audio_hidden_states.shape == (2, tokens, config.text_config.hidden_size)
    with pytest.raises(ValueError):
        _config(tokenizer, tokens_per_audio=3, clips_per_audio=4)
    with pytest.raises(ValueError):
        _config(tokenizer, tokens_per_audio=0)


# --------------------------------------------------------------------------- assembly and encoders


def test_from_language_model_adds_the_audio_token(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", "a", "song", ":"])}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    lm = LlamaForCausalLM(_text_config(tok))
    model = MV4AllForConditionalGeneration.from_language_model(
        lm, audio_encoder="tiny", tokenizer=tok, tokens_per_audio=3
    )
    audio_id = tok.convert_tokens_to_ids(AUDIO_PLACEHOLDER)
    assert audio_id == 6 and tok.pad_token == "<unk>" and model.config.audio_token_id == audio_id
    assert model.get_input_embeddings().num_embeddings == 7 == model.config.text_config.vocab_size
    assert model.model.language_model is lm.model and model.lm_head is lm.lm_head  # moved in, not copied
    assert model.generation_config.suppress_tokens == [audio_id]
    assert not any(p.is_meta for p in model.parameters())
    ids = torch.tensor([[1, 4, 5, audio_id, audio_id, audio_id, 3]])
    with torch.no_grad():
        logits = model(input_ids=ids, input_features=_features(0).unsqueeze(0)).logits
    assert logits.shape == (1, 7, 7) and torch.isfinite(logits).all()


def _tiny_hf_config(name):
    from transformers import ASTConfig, ClapAudioConfig, WhisperConfig

    return {
        # AST at ImageBind's input size and patch grid (FACTS.md), CLAP/Whisper at toy width.
        "ast": lambda: ASTConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            max_length=204, patch_size=16, frequency_stride=10, time_stride=10,
        ),
        "clap": lambda: ClapAudioConfig(
            hidden_size=32, depths=[1, 1], num_attention_heads=[2, 2], patch_embeds_hidden_size=16,
            projection_dim=24, window_size=8, enable_fusion=False,
        ),
        "whisper": lambda: WhisperConfig(
            d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        ),
    }[name]()


@pytest.mark.parametrize("name", ["ast", "clap", "whisper"])
def test_transformers_encoders(name, tmp_path):
    torch.manual_seed(0)
    encoder = build_audio_encoder(name, _tiny_hf_config(name))
    wave = (np.random.default_rng(0).standard_normal(encoder.sample_rate * 4) * 0.1).astype(np.float32)
    feats = encoder.features(wave, encoder.sample_rate, num_clips=2)
    with torch.no_grad():
        out = encoder.encode(feats.unsqueeze(0))
    assert out.shape == (1, 2, encoder.output_dim)
    encoder.save_pretrained(tmp_path / "enc")
    again = load_audio_encoder(name, tmp_path / "enc")
    with torch.no_grad():
        assert torch.equal(again.encode(feats.unsqueeze(0)), out)
    again.train()
    assert not again.training and not any(p.requires_grad for p in again.parameters())
    if name == "whisper":  # hub Whisper checkpoints hold encoder + decoder
        from transformers import WhisperModel

        full = WhisperModel(_tiny_hf_config("whisper"))
        full.save_pretrained(tmp_path / "full")
        enc = load_audio_encoder("whisper", tmp_path / "full")
        assert all(torch.equal(v, full.encoder.state_dict()[k]) for k, v in enc.state_dict().items())


def test_model_with_a_transformers_encoder_round_trips(tokenizer, tmp_path):
    config = _config(tokenizer, tokens_per_audio=2)
    config = MV4AllConfig(
        text_config=config.text_config, audio_encoder="ast", audio_config=_tiny_hf_config("ast"),
        audio_token_id=config.audio_token_id, tokens_per_audio=2,
    )
    model = _model(config)
    wave = (np.random.default_rng(0).standard_normal(16000 * 6) * 0.1).astype(np.float32)
    feats = MV4AllProcessor.from_config(tokenizer, config).waveform_features(wave)  # the one audio path
    assert feats.shape == (2, 204, 128)
    collate = MV4AllCollator.for_model(tokenizer, config, audio_features=lambda row: feats)
    batch = collate(ROWS[:1])
    model.save_pretrained(tmp_path)
    with torch.no_grad():
        reloaded = MV4AllForConditionalGeneration.from_pretrained(tmp_path).eval()
        assert torch.equal(reloaded(**batch).logits, model(**batch).logits)


# --------------------------------------------------------------------------- LoRA, TRL, scale


LORA = dict(
    r=32,
    lora_alpha=32,
    target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)",
    modules_to_save=["projector"],
    task_type="CAUSAL_LM",
)


def test_lora_adapter_saves_and_reloads_exactly(tokenizer, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    config = _config(tokenizer)
    _model(config).save_pretrained(tmp_path / "base")
    peft_model = get_peft_model(MV4AllForConditionalGeneration.from_pretrained(tmp_path / "base"), LoraConfig(**LORA))
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or "projector.modules_to_save" in n for n in names)
    assert not any("audio_encoder" in n for n, _ in peft_model.named_modules() if "lora" in n)
    with torch.no_grad():  # make the adapter non-trivial (lora_B starts at zero)
        for n, p in peft_model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    peft_model.eval()
    batch = _collator(tokenizer, config)(ROWS[:2])
    with torch.no_grad():
        before = peft_model(**batch).logits
    peft_model.save_pretrained(tmp_path / "adapter")
    base = MV4AllForConditionalGeneration.from_pretrained(tmp_path / "base")
    with torch.no_grad():
        plain = base.eval()(**batch).logits
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        after = reloaded(**batch).logits
    assert torch.equal(after, before) and not torch.allclose(plain, before)


def test_trl_sft_trainer_runs_on_our_forward(tokenizer, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    config = _config(tokenizer)
    model = _model(config).freeze_language_model()
    cache = {r["id"]: torch.randn(3, model.model.audio_encoder.output_dim) for r in ROWS}
    args = SFTConfig(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        logging_steps=1,
        save_strategy="no",
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None,
        use_cpu=True,
        bf16=False,
        report_to=[],
    )
    projector = model.model.projector.linear_1.weight.detach().clone()
    lm = model.model.language_model.layers[0].self_attn.q_proj.weight.detach().clone()
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(ROWS),
        data_collator=MV4AllCollator.for_model(tokenizer, config, audio_embeddings=cache),
        processing_class=tokenizer,
    )
    result = trainer.train()
    assert result.global_step == 3 and np.isfinite(result.training_loss)
    assert not torch.equal(model.model.projector.linear_1.weight.detach(), projector)
    assert torch.equal(model.model.language_model.layers[0].self_attn.q_proj.weight.detach(), lm)


def test_vicuna_7b_parameter_counts_on_meta():
    from peft import LoraConfig, get_peft_model

    vicuna = LlamaConfig(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, intermediate_size=11008, vocab_size=32000
    )
    with torch.device("meta"):
        model = MV4AllForConditionalGeneration(MV4AllConfig(text_config=vicuna, audio_token_id=31999))
    model.freeze_language_model()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 1024 * 4096 + 4096 == 4_198_400  # stage 1: the projector only
    assert sum(p.numel() for p in model.model.audio_encoder.parameters()) == 86_235_648
    peft_model = get_peft_model(model, LoraConfig(**LORA))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert trainable == 4_198_400 + 32 * 4 * 2 * 32 * 4096 == 37_752_832  # stage 2: + LoRA r=32 on q/k/v/o
