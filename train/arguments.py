"""The training config: three argument groups plus TRL's ``SFTConfig``, read from one YAML.

As with TRL's ``TrlParser``, a config is one flat mapping whose keys are the fields of the argument
dataclasses below (model, data, script) or of ``SFTConfig`` itself: ``learning_rate``,
``per_device_train_batch_size``, ``warmup_steps``, ``activation_checkpointing``, ... go to
``SFTConfig`` untouched, with its own defaults. Our one extension is a ``stage1`` / ``stage2``
section that overrides the top level for that stage, so both stages share one file. An unknown key
is an error that names the closest known one: a typo never silently trains with a default.

``precision`` is the one key mapped by hand: it is the dtype of the frozen weights, and the
matching autocast flag (``bf16`` / ``fp16``) follows from it.

``backbone`` picks the model family (``mv4all.model.backbones``): ``mv4all`` (the paper's shape, two
stages) or a transformers audio LLM such as ``qwen2-audio`` (already aligned to audio: stage 2 only,
from the base checkpoint named by ``language_model``, no ``init_from``). ``stages`` says which stages a
config has; it defaults to the backbone's and may not ask for one the backbone does not have.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from mv4all.inputs import parse_combination
from mv4all.safety import looks_like_hub_id

STAGE_SECTIONS = ("stage1", "stage2")


@dataclass
class ModelArguments:
    """The frozen parts, the projector, and what stage 2 trains on top."""

    backbone: str = "mv4all"  # mv4all | qwen2-audio | any registered in mv4all.model.backbones
    stages: list[int] | None = None  # the stages this recipe has [the backbone's: mv4all 1, 2; qwen2-audio 2]
    language_model: str = ""  # Hub id or folder of the base LLM (an audio LLM: its whole checkpoint)
    language_model_revision: str | None = None
    tokenizer: str | None = None  # default: the language model's own
    audio_encoder: str = "imagebind"  # encoder registry name (mv4all.model.encoders)
    audio_encoder_path: str | None = None  # its weights: imagebind_huge.pth, a folder or a Hub id
    tokens_per_audio: int = 1
    clip_sampler: str = "imagebind"
    projector_type: str = "linear"
    precision: str = "fp32"  # fp32 | bf16 | fp16: the frozen weights' dtype and the autocast
    init_from: str | None = None  # stage 2: the stage-1 run directory
    lora: dict[str, Any] = field(default_factory=dict)  # r, alpha, dropout, target_modules, modules_to_save


@dataclass
class DataArguments:
    """Which rows, which prompt fields, and where the audio comes from."""

    dataset: str = ""  # a built dataset folder (mv4all build) or its Hub id
    dataset_config: str = "mv_description"
    split: str = "train"
    target_field: str = "mv_description_text"
    instruction: str | None = None  # None: each row's own instruction
    inputs: str = "1+2+3+4"  # Table 1 row: any combination of 1-4, or none
    audio_root: str | None = None  # the Music4All root the dataset's audio paths are relative to
    embeddings: str | None = None  # `mv4all embed` cache: the encoder then never runs in training
    max_length: int | None = 2048  # tokens per example; longer ones are cut with a warning


@dataclass
class ScriptArguments:
    """How this invocation runs (not part of the model a run describes)."""

    stage: int = 1
    output_dir: str = ""  # the run directory ({inputs} and {seed} are filled in); checkpoints/ inside
    resume: bool = False
    overwrite: bool = False
    num_threads: int | None = None  # torch threads: tiny models run fastest on one
    memory_check: bool = True  # refuse to start when the estimate does not fit the device
    check_frozen: bool = True  # fingerprint every frozen tensor before training, compare after


GROUPS = (ModelArguments, DataArguments, ScriptArguments)
DERIVED = {"bf16": "precision", "fp16": "precision"}
# Keys this recipe (or transformers) once used, refused with their new name: a silently ignored
# `gradient_checkpointing: true` (a deprecated SFTConfig alias that the new name overrides) would OOM.
RENAMED = {"batch_size": "per_device_train_batch_size", "warmup_ratio": "warmup_steps",
           "gradient_checkpointing": "activation_checkpointing",
           "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs"}

# What this recipe needs from SFTConfig whatever the YAML says: the collator builds every batch
# (no TRL dataset preparation, every column kept), and training runs where the accelerator is.
FIXED = {"remove_unused_columns": False, "dataset_kwargs": {"skip_prepare_dataset": True}, "max_length": None}
# Defaults that differ from SFTConfig's, each for a reason: TRL turns activation checkpointing on,
# which must be a choice here (it costs time; with a frozen LLM only the non-reentrant variant gives
# LoRA gradients); the fused AdamW needs an accelerator; reports go nowhere unless asked.
DEFAULTS = {"activation_checkpointing": False, "optim": "adamw_torch", "report_to": [], "save_strategy": "steps"}


def _sft_fields() -> set[str]:
    from trl import SFTConfig

    return {f.name for f in dataclasses.fields(SFTConfig) if f.init}


def _known() -> dict[str, str]:
    known = {name: "SFTConfig" for name in _sft_fields()}
    for group in GROUPS:
        known.update({f.name: group.__name__ for f in dataclasses.fields(group)})
    return known


def _check_keys(cfg: dict[str, Any], where: str) -> None:
    known = _known()
    for key in cfg:
        if known.get(key, "SFTConfig") != "SFTConfig":  # ours (max_length, output_dir mean ours here)
            continue
        if key in RENAMED:
            raise ValueError(f"{where}: `{key}` is now `{RENAMED[key]}` (TRL SFTConfig's name)")
        if key in DERIVED:
            raise ValueError(f"{where}: `{key}` follows from `{DERIVED[key]}`; set precision: bf16 | fp16 | fp32")
        if key in FIXED:
            raise ValueError(f"{where}: `{key}` is fixed by the recipe ({FIXED[key]!r}); remove it")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise ValueError(f"{where}: unknown config key `{key}`{hint}")


def load_config(path: str | Path, stage: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The resolved flat config of one stage: defaults, YAML top level, its ``stageN`` section, overrides.

    ``None`` override values are ignored (unset command-line options).
    """
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    top = {k: v for k, v in raw.items() if k not in STAGE_SECTIONS}
    section = raw.get(f"stage{stage}") or {}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for where, part in ((str(path), top), (f"{path} stage{stage}", section), ("overrides", given)):
        _check_keys(part, where)
    cfg: dict[str, Any] = {}
    for group in GROUPS:
        cfg.update(dataclasses.asdict(group()))
    cfg.update({"inputs": "1" if stage == 1 else "1+2+3+4", **top, **section, **given, "stage": stage})
    cfg["inputs"] = parse_combination(str(cfg["inputs"])).name
    cfg.setdefault("seed", 42)  # SFTConfig's default, named here because the run records it
    if not cfg["output_dir"]:
        raise ValueError(f"{path}: no output_dir for stage {stage} (--output-dir)")
    cfg["output_dir"] = str(cfg["output_dir"]).format(inputs=cfg["inputs"], seed=cfg.get("seed", 42))
    _check_stages(cfg, path)
    dataset = str(cfg.get("dataset") or "")
    if not Path(dataset).is_dir() and not looks_like_hub_id(dataset):
        raise FileNotFoundError(f"dataset folder not found: {dataset or '(none)'} (--dataset)")
    return cfg


def _check_stages(cfg: dict[str, Any], path) -> None:
    """The backbone exists, the stage is one of the config's ``stages``, and stage 2 has ``init_from`` exactly when
    the recipe has a stage 1."""
    from mv4all.model.backbones import get_backbone

    spec = get_backbone(cfg.get("backbone"))
    cfg["backbone"] = spec.name
    stages = sorted({int(s) for s in (cfg.get("stages") or spec.stages)})
    if any(s not in spec.stages for s in stages) or (2 in stages and spec.needs_stage1 and 1 not in stages):
        raise ValueError(f"{path}: stages {stages} do not fit backbone {spec.name!r}, whose recipe has stages "
                         f"{list(spec.stages)}")
    cfg["stages"] = stages
    stage = cfg["stage"]
    if stage not in stages:
        why = " (it is aligned to audio already: train stage 2 from its checkpoint)" if stage == 1 else ""
        raise ValueError(f"backbone {spec.name!r} has no stage {stage} in this config (stages {stages}){why}")
    if stage == 2 and 1 in stages and not cfg.get("init_from"):
        raise ValueError("stage 2 needs init_from (--init-from): the stage-1 run directory")
    if stage == 2 and 1 not in stages and cfg.get("init_from"):
        raise ValueError(f"backbone {spec.name!r} has no stage 1 here: stage 2 starts from language_model "
                         f"({cfg.get('language_model') or 'unset'}); remove init_from")
    if spec.kind == "audio_lm" and not cfg.get("language_model"):
        raise ValueError(f"{path}: backbone {spec.name!r} needs language_model: its checkpoint (Hub id or folder)")


def sft_config_kwargs(cfg: dict[str, Any], output_dir: str | Path) -> dict[str, Any]:
    """``SFTConfig`` arguments of a resolved config: its SFTConfig keys, the recipe's choices, the precision.

    Kept as a dict so a recipe can be checked without building the trainer.
    """
    precision = str(cfg.get("precision", "fp32")).lower()
    ours = {f.name for group in GROUPS for f in dataclasses.fields(group)}
    kwargs = {**DEFAULTS, **{k: v for k, v in cfg.items() if k in _sft_fields() and k not in ours}, **FIXED}
    kwargs.update(output_dir=str(output_dir), bf16=precision == "bf16", fp16=precision == "fp16",
                  use_cpu=not torch.cuda.is_available())
    if kwargs["activation_checkpointing"]:
        kwargs.setdefault("activation_checkpointing_kwargs", {"use_reentrant": False})
    for key in ("learning_rate", "weight_decay", "warmup_steps", "adam_beta1", "adam_beta2", "max_grad_norm"):
        if key in kwargs and isinstance(kwargs[key], str):  # YAML reads 1e-4 (no dot) as a string
            kwargs[key] = float(kwargs[key])
    return kwargs
