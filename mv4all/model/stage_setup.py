"""The model side of a training stage, from its resolved config (``train/arguments.py``).

``train/sft.py`` is the recipe; this module answers its questions about the model: which tokenizer or
processor turns rows into tokens, which model a stage starts from (stage 1: base LLM + encoder + a fresh
projector; stage 2: the stage-1 run; an audio LLM: its own checkpoint), what trains (projector, LoRA), and
what stage 2 inherits from stage 1. One place per backbone (``mv4all.model.backbones``), so the recipe
reads the same for every backbone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .run import precision_dtype


def audio_lm_spec(cfg: dict[str, Any]):
    """The backbone spec when the config trains a transformers audio LLM, else None (mv4all)."""
    from .backbones import get_backbone

    spec = get_backbone(cfg.get("backbone"))
    return spec if spec.kind == "audio_lm" else None


def load_processing(cfg: dict[str, Any]):
    """What turns rows into tokens: the tokenizer with ``<audio>`` (mv4all: the base LLM's in stage 1, the stage-1
    run's in stage 2), or an audio LLM's own transformers processor."""
    from .run import load_tokenizer

    if audio_lm_spec(cfg):
        from .audio_lm import load_audio_lm_processor

        return load_audio_lm_processor(cfg["tokenizer"] or cfg["language_model"], cfg["language_model_revision"])
    if cfg["stage"] == 1:
        return load_tokenizer(cfg["tokenizer"] or cfg["language_model"], cfg["language_model_revision"])
    return load_tokenizer(str(Path(cfg["init_from"]) / "tokenizer"))


def prompt_processor(cfg: dict[str, Any], processing, model=None):
    """The processor the collator uses, from the config alone (token counts, memory estimate) or from the model."""
    from . import MV4AllProcessor

    spec = audio_lm_spec(cfg)
    if spec is not None:
        from .audio_lm import AudioLMProcessor

        return AudioLMProcessor(processing, spec)
    return MV4AllProcessor.from_model(model, processing) if model is not None else \
        MV4AllProcessor.for_config(processing, cfg)


def build_stage_model(cfg: dict[str, Any], tokenizer=None):
    """Stage 1: base LLM + encoder + fresh projector. Stage 2: the stage-1 run. Returns (model, tokenizer).

    An audio LLM: its checkpoint, frozen (``tokenizer`` is then its processor, returned as it is).
    """
    from .run import build_model, load_run, load_tokenizer

    dtype = precision_dtype(cfg["precision"])
    spec = audio_lm_spec(cfg)
    if spec is not None:
        from .audio_lm import load_audio_lm

        return load_audio_lm(spec, cfg["language_model"], revision=cfg["language_model_revision"], dtype=dtype), \
            tokenizer
    if cfg["stage"] == 2:
        model, tokenizer, _ = load_run(cfg["init_from"], language_model=cfg["language_model"],
                                       revision=cfg["language_model_revision"],
                                       audio_encoder_path=cfg["audio_encoder_path"], dtype=dtype)
        return model, tokenizer
    tokenizer = tokenizer or load_tokenizer(cfg["tokenizer"] or cfg["language_model"], cfg["language_model_revision"])
    model = build_model(cfg["language_model"], tokenizer, revision=cfg["language_model_revision"],
                        audio_encoder=cfg["audio_encoder"], audio_encoder_path=cfg["audio_encoder_path"], dtype=dtype,
                        tokens_per_audio=cfg["tokens_per_audio"], clip_sampler=cfg["clip_sampler"],
                        projector_type=cfg["projector_type"])
    return model, tokenizer


def prepare_model(model, cfg: dict[str, Any]):
    """Set what trains: stage 1 the projector, stage 2 projector + LoRA (``lora`` in the config).

    An audio LLM: LoRA on its language model, ``lora.modules_to_save`` in full, the rest (the tower) frozen.
    """
    from peft import get_peft_model

    from . import lora_config

    spec = audio_lm_spec(cfg)
    if spec is not None:
        from .audio_lm import prepare_audio_lm

        return prepare_audio_lm(model, spec, cfg["lora"])

    model.freeze_language_model()
    model.get_audio_encoder().freeze()
    model.model.projector.requires_grad_(True)
    if cfg["stage"] == 1:
        return model
    lora = cfg["lora"]
    extra = {"target_modules": lora["target_modules"]} if lora.get("target_modules") else {}
    if lora.get("modules_to_save"):  # trained in full next to the adapters (the projector always is)
        extra["modules_to_save"] = ["projector", *lora["modules_to_save"]]
    config = lora_config(r=lora.get("r", 32), alpha=lora.get("alpha", 32), dropout=lora.get("dropout", 0.1), **extra)
    return get_peft_model(model, config)


def inherit_stage1(cfg: dict[str, Any]) -> None:
    """Stage 2 trains on the stage-1 run's base LLM and encoder: find them (see ``mv4all.model.weights``)."""
    from .run import read_run_info
    from .weights import locate_audio_encoder, locate_base_model

    try:
        info1 = read_run_info(cfg["init_from"])
    except FileNotFoundError:
        raise FileNotFoundError(f"--init-from {cfg['init_from']}: not a finished stage-1 run (no run.json)") from None
    cfg["language_model"] = locate_base_model(info1, cfg["init_from"], cfg.get("language_model") or None).value
    cfg["audio_encoder_path"] = locate_audio_encoder(info1, cfg["init_from"], cfg.get("audio_encoder_path")).value
    cfg["audio_encoder"] = info1["audio_encoder"]["name"]
    cfg["tokens_per_audio"] = info1["model"]["tokens_per_audio"]


def audio_weights_sha256(cfg: dict[str, Any], model) -> str | None:
    """The frozen audio weights as supplied, before training (recorded in ``run.json``, checked on load)."""
    spec = audio_lm_spec(cfg)
    if spec is not None:
        from .audio_lm import tower_sha256

        return tower_sha256(spec.tower(model))
    from .run import weights_sha256

    return weights_sha256(model.get_audio_encoder())


def trainer_class(cfg: dict[str, Any]):
    """``(trainer class, its extra keyword arguments)``: checkpoints hold what this backbone and stage train."""
    spec = audio_lm_spec(cfg)
    if spec is not None:
        from .audio_lm import AudioLMTrainer

        return AudioLMTrainer, {"backbone": spec}
    from .trainer import MV4AllTrainer

    return MV4AllTrainer, {"stage": cfg["stage"]}
