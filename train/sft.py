"""Two-stage training of the music-to-MV-description model with TRL's SFTTrainer.

    accelerate launch train/sft.py --config train/configs/paper.yaml --stage 1
    accelerate launch train/sft.py --config train/configs/paper.yaml --stage 2 --inputs 1+2+3

Stage 1 trains the projector only (LLM and audio encoder frozen) on music captions; stage 2
starts from a stage-1 run (``init_from``) and trains projector + LoRA on MV descriptions, with
the prompt fields chosen by ``--inputs`` (any combination of 1-4, or ``none``): every row of the
paper's Table 1 is one command. The run directory layout is documented in ``mv4all.model.run``;
``mv4all.model.load_run`` loads it.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import platform
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
CARD_TEMPLATE = importlib.resources.files("mv4all") / "templates" / "model_card.md"  # package data
STAGE_KEYS = ("stage1", "stage2")
# Keys that hold local paths: stored relative to the run directory in config.yaml and run.json.
PATH_KEYS = ("dataset", "audio_root", "embeddings", "language_model", "tokenizer", "audio_encoder_path",
             "init_from", "output_dir")


# --------------------------------------------------------------------------- config


def load_config(path: str | Path, stage: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """YAML top level, then the ``stageN`` section, then overrides (``None`` values are ignored)."""
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    cfg = {k: v for k, v in raw.items() if k not in STAGE_KEYS}
    cfg.update(raw.get(f"stage{stage}") or {})
    cfg.update({k: v for k, v in (overrides or {}).items() if v is not None})
    cfg["stage"] = stage
    from mv4all.inputs import parse_combination

    cfg["inputs"] = parse_combination(str(cfg.get("inputs", "1" if stage == 1 else "1+2+3+4"))).name
    cfg["output_dir"] = str(cfg["output_dir"]).format(inputs=cfg["inputs"], seed=cfg.get("seed", 0))
    for key in ("learning_rate", "weight_decay", "warmup_ratio", "adam_beta1", "adam_beta2"):
        if key in cfg:
            cfg[key] = float(cfg[key])
    if stage == 2 and not cfg.get("init_from"):
        raise ValueError("stage 2 needs init_from (--init-from): the stage-1 run directory")
    from mv4all.safety import looks_like_hub_id

    dataset = str(cfg.get("dataset") or "")
    if not Path(dataset).is_dir() and not looks_like_hub_id(dataset):
        raise FileNotFoundError(f"dataset folder not found: {dataset or '(none)'} (--dataset)")
    return cfg


def _dtype(cfg) -> torch.dtype:
    """The precision the config names, as the weights' dtype (``fp32`` is float32, on any device)."""
    from mv4all.model.run import precision_dtype

    return precision_dtype(cfg.get("precision", "fp32"))


def trainer_kwargs(cfg: dict[str, Any], output_dir: str | Path) -> dict[str, Any]:
    """SFTConfig arguments for this stage (kept as a dict so the recipe can be checked without a GPU)."""
    on_gpu = torch.cuda.is_available()
    precision = str(cfg.get("precision", "fp32")).lower()
    return dict(
        output_dir=str(output_dir),
        seed=int(cfg["seed"]),
        num_train_epochs=float(cfg["num_train_epochs"]),
        max_steps=int(cfg.get("max_steps") or -1),
        per_device_train_batch_size=int(cfg["batch_size"]),
        gradient_accumulation_steps=int(cfg.get("gradient_accumulation_steps", 1)),
        learning_rate=cfg["learning_rate"],
        warmup_steps=cfg.get("warmup_ratio", 0.0),  # a float < 1 is a ratio of the total steps
        lr_scheduler_type=cfg.get("lr_scheduler_type", "linear"),
        optim="adamw_torch",
        adam_beta1=cfg.get("adam_beta1", 0.9),
        adam_beta2=cfg.get("adam_beta2", 0.95),
        weight_decay=cfg.get("weight_decay", 0.0),
        max_grad_norm=float(cfg.get("max_grad_norm", 1.0)),
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not on_gpu,
        logging_steps=int(cfg.get("logging_steps", 10)),
        save_strategy="steps",
        save_steps=int(cfg.get("save_steps", 500)),
        save_total_limit=cfg.get("save_total_limit"),
        dataloader_num_workers=int(cfg.get("dataloader_num_workers", 0)),
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None,
        report_to=[],
        disable_tqdm=cfg.get("disable_tqdm"),
        # Always explicit: TRL's SFTConfig turns activation checkpointing on by default. Non-reentrant:
        # with a frozen LLM the embeddings do not require grad, and the reentrant variant would then
        # silently give LoRA no gradient.
        activation_checkpointing=bool(cfg.get("gradient_checkpointing")),
        **({"activation_checkpointing_kwargs": {"use_reentrant": False}} if cfg.get("gradient_checkpointing") else {}),
    )


# --------------------------------------------------------------------------- model


def build_stage_model(cfg: dict[str, Any], tokenizer=None):
    """Stage 1: base LLM + encoder + fresh projector. Stage 2: the stage-1 run. Returns (model, tokenizer)."""
    from mv4all.model.run import build_model, load_run, load_tokenizer

    if cfg["stage"] == 1:
        if tokenizer is None:
            tokenizer = load_tokenizer(cfg.get("tokenizer") or cfg["language_model"], cfg.get("language_model_revision"))
        model = build_model(
            cfg["language_model"], tokenizer, revision=cfg.get("language_model_revision"),
            audio_encoder=cfg["audio_encoder"], audio_encoder_path=cfg.get("audio_encoder_path"), dtype=_dtype(cfg),
            tokens_per_audio=cfg.get("tokens_per_audio", 1), clip_sampler=cfg.get("clip_sampler", "imagebind"),
            projector_type=cfg.get("projector_type", "linear"),
        )
        return model, tokenizer
    model, tokenizer, _ = load_run(
        cfg["init_from"], language_model=cfg.get("language_model"), revision=cfg.get("language_model_revision"),
        audio_encoder_path=cfg.get("audio_encoder_path"), dtype=_dtype(cfg),
    )
    return model, tokenizer


def prepare_model(model, cfg: dict[str, Any]):
    """Set the trainable parameters: stage 1 the projector, stage 2 projector + LoRA on q/k/v/o."""
    model.freeze_language_model()
    model.get_audio_encoder().freeze()
    model.model.projector.requires_grad_(True)
    if cfg["stage"] == 1:
        return model
    from peft import get_peft_model

    from mv4all.model import lora_config

    lora = cfg.get("lora") or {}
    model = get_peft_model(model, lora_config(r=lora.get("r", 32), alpha=lora.get("alpha", 32),
                                              dropout=lora.get("dropout", 0.1)))
    return model


def make_collator(model, tokenizer, cfg: dict[str, Any]):
    from mv4all.inputs import parse_combination
    from mv4all.model import MV4AllCollator
    from mv4all.model.embedding_cache import AudioFeatureReader, EmbeddingCache
    from mv4all.model.run import weights_sha256

    config = model.config
    kwargs = dict(combination=cfg["inputs"], instruction=cfg.get("instruction"),
                  target_field=cfg["target_field"], max_length=cfg.get("max_length"))
    if parse_combination(cfg["inputs"]).uses_audio:
        if cfg.get("embeddings"):
            cache = EmbeddingCache(cfg["embeddings"])
            cache.check(model, weights_sha256(model.get_audio_encoder()))
            kwargs["audio_embeddings"] = cache
        else:
            kwargs["audio_features"] = AudioFeatureReader.for_model(model, cfg["audio_root"])
    return MV4AllCollator.for_model(tokenizer, config, **kwargs)


def load_train_set(cfg: dict[str, Any]):
    from mv4all.data import load_split

    ds = load_split(cfg["dataset"], cfg["dataset_config"], cfg.get("split", "train"))
    keep = ["id", "audio", "genres", "mv_type", "lyrics_understanding", "instruction", cfg["target_field"]]
    return ds.select_columns([c for c in dict.fromkeys(keep) if c in ds.column_names])


# --------------------------------------------------------------------------- trainer


def _trainer_class(stage: int):
    from trl import SFTTrainer

    class MV4AllTrainer(SFTTrainer):
        """Checkpoints hold what trains: the projector (stage 1) or adapter + projector (stage 2).

        transformers drops frozen weights from checkpoints only for PEFT models, and DeepSpeed writes
        its own copy of the whole module; both would store the frozen 7B LLM at every save.
        """

        def _save(self, output_dir=None, state_dict=None):
            from mv4all.model.run import save_projector

            if not self.args.should_save:
                return
            model = self.accelerator.unwrap_model(self.model)
            if stage == 1:
                save_projector(model, output_dir or self.args.output_dir)
            else:  # adapter + projector; the <audio> embedding rows are rebuilt deterministically
                model.save_pretrained(output_dir or self.args.output_dir, save_embedding_layers=False)

        def _save_optimizer_and_scheduler(self, output_dir):
            if self.is_deepspeed_enabled and stage == 1:
                self.model_wrapped.save_checkpoint(output_dir, exclude_frozen_parameters=True)
                return
            super()._save_optimizer_and_scheduler(output_dir)

        def _prepare_for_training(self, max_steps, train_dataloader, resume_from_checkpoint):
            if not (self.is_deepspeed_enabled and stage == 1 and resume_from_checkpoint):
                return super()._prepare_for_training(max_steps, train_dataloader, resume_from_checkpoint)
            # The engine checkpoint has no frozen weights, so it loads non-strictly (transformers
            # loads strictly for every non-PEFT model).
            prepared = super()._prepare_for_training(max_steps, train_dataloader, None)
            path, _ = self.model_wrapped.load_checkpoint(resume_from_checkpoint, load_module_strict=False,
                                                         load_optimizer_states=True, load_lr_scheduler_states=True)
            if path is None:
                raise ValueError(f"[deepspeed] failed to resume from {resume_from_checkpoint}")
            return prepared

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            if stage == 2:
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            from mv4all.model.run import PROJECTOR_FILE, load_projector

            load_projector(self.accelerator.unwrap_model(model or self.model),
                           Path(resume_from_checkpoint) / PROJECTOR_FILE)

    return MV4AllTrainer


def _metrics_log(path: Path):
    from transformers import TrainerCallback

    class MetricsLog(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            # A resumed run redoes the steps after its checkpoint: drop their old lines, keep the rest.
            if state.is_world_process_zero and state.global_step > 0 and path.is_file():
                from mv4all.safety import atomic_write_text

                kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                        if line.strip() and json.loads(line).get("step", 0) <= state.global_step]
                atomic_write_text(path, "".join(line + "\n" for line in kept))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")

    return MetricsLog()


def _stop_after(step: int):
    """Simulated interruption (``stop_after_steps``, used by the resume tests): checkpoint at ``step``, stop."""
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= step:
                control.should_save = True
                control.should_training_stop = True

    return StopAfter()


def target_token_stats(tokenizer, config, train_set, cfg: dict[str, Any]) -> dict[str, int]:
    """Token counts of the training targets (output + end marker) and whole examples: n, p50, p99, max."""
    from mv4all.model import MV4AllCollator

    collator = MV4AllCollator.for_model(tokenizer, config, combination=cfg["inputs"], instruction=cfg.get("instruction"),
                                        target_field=cfg["target_field"], max_length=None)
    targets, totals = [], []
    for row in train_set:
        ids, labels = collator.encode(row)
        targets.append(sum(1 for t in labels if t != -100))
        totals.append(len(ids))
    if not targets:
        return {"n": 0}

    def pct(values, q):
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {"n": len(targets), "target_p50": pct(targets, 0.5), "target_p99": pct(targets, 0.99),
            "target_max": max(targets), "example_p99": pct(totals, 0.99), "example_max": max(totals)}


def generation_max_new_tokens(stats: dict[str, int]) -> int:
    """Room for the longest training target plus 10%, rounded up to a multiple of 32."""
    longest = max(int(stats.get("target_max") or 0), int(stats.get("target_p99") or 0))
    want = int(longest * 1.1) + 8
    return max(64, -(-want // 32) * 32)


def memory_estimate(cfg: dict[str, Any], stats: dict[str, int]):
    """Estimate this stage's peak memory from configs (no weights loaded); refuse if it cannot fit."""
    from transformers import AutoConfig

    from mv4all.model import LORA_TARGET_MODULES, MV4AllConfig
    from mv4all.model.encoders import build_audio_encoder
    from mv4all.model.memory import GB, estimate_training_memory, visible_device_memory
    from mv4all.model.projector import AudioProjector

    text_config = AutoConfig.from_pretrained(cfg["language_model"], revision=cfg.get("language_model_revision"))
    mv_config = MV4AllConfig(text_config=text_config, audio_encoder=cfg["audio_encoder"],
                             tokens_per_audio=cfg.get("tokens_per_audio", 1),
                             projector_type=cfg.get("projector_type", "linear"))
    with torch.device("meta"):
        encoder = build_audio_encoder(cfg["audio_encoder"], mv_config.audio_config)
        projector = AudioProjector(mv_config, encoder.output_dim)
    length = int(stats.get("example_max") or cfg.get("max_length") or 2048)
    if cfg.get("max_length"):
        length = min(length, int(cfg["max_length"]))
    lora = (cfg.get("lora") or {}) if cfg["stage"] == 2 else {}
    estimate = estimate_training_memory(
        text_config, encoder_params=sum(p.numel() for p in encoder.parameters()),
        projector_params=sum(p.numel() for p in projector.parameters()), weight_dtype=_dtype(cfg),
        sequence_length=length, batch_size=int(cfg["batch_size"]),
        gradient_checkpointing=bool(cfg.get("gradient_checkpointing")),
        lora_r=int(lora.get("r", 32)) if cfg["stage"] == 2 else None, lora_pattern=LORA_TARGET_MODULES)
    where, available = visible_device_memory()
    print(f"{estimate.summary()}; {where}: {available / GB:.1f} GiB", flush=True)
    if cfg.get("memory_check", True) and not estimate.fits(available):
        raise MemoryError(
            f"this stage needs about {estimate.total / GB:.1f} GiB per device but {where} has {available / GB:.1f} GiB: "
            "turn on gradient_checkpointing, lower max_length or batch_size, or set memory_check: false to try anyway")
    return estimate


def train(config_path: str | Path, stage: int, overrides: dict[str, Any] | None = None, return_model: bool = False,
          callbacks: list | None = None):
    """Run one stage; returns the run directory (``return_model``: and the trained model, tokenizer).

    ``overrides`` beat the YAML (e.g. ``max_steps``, ``output_dir``, ``inputs``, ``init_from``, ``resume``);
    ``callbacks`` are extra ``TrainerCallback`` objects.
    """
    from transformers import set_seed
    from trl import SFTConfig

    from mv4all.model.integrity import frozen_fingerprint
    from mv4all.model.run import load_tokenizer, weights_sha256
    from mv4all.safety import claim_folder

    cfg = load_config(config_path, stage, overrides)
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg["num_threads"]))
    run_dir = Path(cfg["output_dir"])
    if stage == 2:  # the base weights and the encoder setup are the stage-1 run's (checked before writing)
        _inherit_stage1(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # one process claims; the others write only what rank 0 allows
        claim_folder(run_dir, "run", overwrite=bool(cfg.get("overwrite")), legacy=("run.json",),
                     option="--overwrite (train/sft.py)")
    checkpoints = run_dir / "checkpoints"
    resume = bool(cfg.get("resume"))
    if not resume and checkpoints.exists() and any(checkpoints.glob("checkpoint-*")):
        raise FileExistsError(f"{run_dir} already has checkpoints: pass --resume, or another --output-dir")
    set_seed(int(cfg["seed"]))
    started = time.time()
    train_set = load_train_set(cfg)
    tokenizer = load_tokenizer(cfg.get("tokenizer") or cfg["language_model"], cfg.get("language_model_revision")) \
        if stage == 1 else load_tokenizer(str(Path(cfg["init_from"]) / "tokenizer"))
    from mv4all.model import MV4AllConfig

    stats = target_token_stats(tokenizer, MV4AllConfig(audio_encoder=cfg["audio_encoder"],
                                                       tokens_per_audio=cfg.get("tokens_per_audio", 1)), train_set, cfg)
    estimate = memory_estimate(cfg, stats)
    model, tokenizer = build_stage_model(cfg, tokenizer)
    base = model
    supplied = {"audio_encoder": weights_sha256(base.get_audio_encoder()), "base_model": _base_model_sha256(cfg)}
    model = prepare_model(model, cfg)
    # Frozen weights may end training cast to bf16/fp16 (DeepSpeed casts the whole module): accept exactly that.
    fingerprint = frozen_fingerprint(model, (torch.bfloat16, torch.float16)) if cfg.get("check_frozen", True) else None
    args = SFTConfig(**trainer_kwargs(cfg, checkpoints))
    extra = [_metrics_log(run_dir / "logs" / "metrics.jsonl")] + list(callbacks or [])
    if cfg.get("stop_after_steps"):
        extra.append(_stop_after(int(cfg["stop_after_steps"])))
    trainer = _trainer_class(stage)(
        model=model, args=args, train_dataset=train_set, data_collator=make_collator(base, tokenizer, cfg),
        processing_class=tokenizer, callbacks=extra,
    )
    last = last_complete_checkpoint(checkpoints) if resume else None
    result = trainer.train(resume_from_checkpoint=last)
    if not trainer.is_world_process_zero():
        return (run_dir, model, tokenizer) if return_model else run_dir
    trainer.state.save_to_json(str(run_dir / "trainer_state.json"))
    if trainer.state.global_step < trainer.state.max_steps:  # interrupted: checkpoints only
        return (run_dir, model, tokenizer) if return_model else run_dir
    if fingerprint is not None:
        fingerprint.check(model)
    provenance = {"supplied": supplied, "frozen_sha256": None if fingerprint is None else fingerprint.sha256,
                  "target_tokens": stats, "memory_estimate": estimate.to_dict()}
    _finish_run(model, base, tokenizer, cfg, run_dir, trainer, result, time.time() - started, provenance)
    return (run_dir, model, tokenizer) if return_model else run_dir


def _inherit_stage1(cfg: dict[str, Any]) -> None:
    """Stage 2 trains on the stage-1 run's base LLM and encoder: find them (see ``mv4all.model.weights``)."""
    from mv4all.model.run import read_run_info
    from mv4all.model.weights import locate_audio_encoder, locate_base_model

    try:
        info1 = read_run_info(cfg["init_from"])
    except FileNotFoundError:
        raise FileNotFoundError(f"--init-from {cfg['init_from']}: not a finished stage-1 run (no run.json)") from None
    cfg["language_model"] = locate_base_model(info1, cfg["init_from"], cfg.get("language_model")).value
    cfg["audio_encoder_path"] = locate_audio_encoder(info1, cfg["init_from"], cfg.get("audio_encoder_path")).value
    cfg["audio_encoder"] = info1["audio_encoder"]["name"]
    cfg["tokens_per_audio"] = info1["model"]["tokens_per_audio"]


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest ``checkpoint-N`` whose save finished (transformers writes ``trainer_state.json`` last).

    A process killed while saving leaves an incomplete folder; resuming from it would fail or, worse,
    load half a state, so it is skipped with a note.
    """
    found = sorted((p for p in checkpoints.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True) if checkpoints.is_dir() else []
    for folder in found:
        if (folder / "trainer_state.json").is_file():
            return str(folder)
        print(f"skipping incomplete checkpoint {folder} (its save did not finish)", flush=True)
    return None


def whole_run_loss(state, fallback: float) -> float:
    """Mean training loss over every logged step of the run, resumed sessions included."""
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    return sum(losses) / len(losses) if losses else fallback


def _base_model_sha256(cfg: dict[str, Any]) -> str | None:
    from mv4all.model.weights import model_files_sha256

    return model_files_sha256(cfg["language_model"], cfg.get("language_model_revision"))


def frozen_sha256(model) -> str:
    """The frozen-weights hash a run records (see ``mv4all.model.integrity``)."""
    from mv4all.model.integrity import frozen_fingerprint

    return frozen_fingerprint(model).sha256


# --------------------------------------------------------------------------- run directory


def _finish_run(model, base, tokenizer, cfg, run_dir: Path, trainer, result, seconds: float,
                provenance: dict[str, Any]) -> None:
    from mv4all.describe import Decoding, save_generation_config
    from mv4all.model.run import STAGE1_DIR, STAGE2_DIR, TOKENIZER_DIR, portable_path, save_config, save_projector
    from mv4all.safety import atomic_write_text

    if cfg["stage"] == 1:
        save_projector(base, run_dir / STAGE1_DIR)
    else:
        peft_cfg = model.peft_config["default"]
        peft_cfg.base_model_name_or_path = portable_path(cfg["language_model"], run_dir / STAGE2_DIR)
        model.save_pretrained(str(run_dir / STAGE2_DIR), save_embedding_layers=False)
        save_config(base.config, run_dir / STAGE2_DIR)
    tokenizer.save_pretrained(str(run_dir / TOKENIZER_DIR))
    save_generation_config(run_dir, Decoding(max_new_tokens=generation_max_new_tokens(provenance["target_tokens"])))
    resolved = {k: (portable_path(v, run_dir) if k in PATH_KEYS and v else v) for k, v in cfg.items()
                if k not in ("resume", "stop_after_steps", "disable_tqdm", "overwrite")}
    atomic_write_text(run_dir / "config.yaml", "# resolved training config; local paths are relative to this run "
                      "directory\n" + yaml.safe_dump(resolved, sort_keys=False))
    info = run_info(cfg, base, run_dir, trainer, result, seconds, provenance)
    atomic_write_text(run_dir / "README.md", render_card(info, cfg))
    atomic_write_text(run_dir / "run.json", json.dumps(info, indent=2) + "\n")  # last: marks the run finished


def _git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def _dataset_info(cfg) -> dict[str, Any]:
    from mv4all.data import load_split
    from mv4all.model.run import ids_sha256

    dataset = str(cfg["dataset"])
    build_id = None
    info_file = Path(dataset) / "build_info.json"
    if info_file.is_file():
        build_id = json.loads(info_file.read_text()).get("build_id")
    try:
        test_ids = list(load_split(dataset, "mv_description", "test")["id"])
    except (ValueError, FileNotFoundError):
        test_ids = []
    return {"build_id": build_id, "test_ids_sha256": ids_sha256(test_ids), "num_test": len(test_ids)}


def run_info(cfg, base, run_dir: Path, trainer, result, seconds: float, provenance: dict[str, Any]) -> dict[str, Any]:
    """``run.json``: what was trained, from what (base weights by id/path + sha256), how, and its figures."""
    from importlib.metadata import PackageNotFoundError, version

    from mv4all.model.run import portable_path

    def pkg(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    def where(value):
        return {"local": value is not None and Path(str(value)).exists(),
                "file": None if value is None else Path(str(value)).name}

    mc = base.config
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    encoder_path, lm = cfg.get("audio_encoder_path"), cfg["language_model"]
    return {
        "mv4all_version": pkg("mv4all"),
        "git_sha": _git_sha(),
        "seed": int(cfg["seed"]),
        "stage": int(cfg["stage"]),
        "inputs": cfg["inputs"],
        "init_from": portable_path(cfg.get("init_from"), run_dir),
        "dataset": {"id": portable_path(cfg["dataset"], run_dir), "config": cfg["dataset_config"],
                    "num_train": len(trainer.train_dataset), **_dataset_info(cfg)},
        "audio_encoder": {"name": mc.audio_encoder, "path": portable_path(encoder_path, run_dir), **where(encoder_path),
                          "sha256": provenance["supplied"]["audio_encoder"]},  # as supplied, before any cast
        "tokens_per_audio": mc.tokens_per_audio,
        "model": {"tokens_per_audio": mc.tokens_per_audio, "clips_per_audio": mc.clips_per_audio,
                  "clip_sampler": mc.clip_sampler, "projector_type": mc.projector_type,
                  "audio_token_id": mc.audio_token_id, "hidden_size": mc.text_config.hidden_size},
        "base_model": {"id": portable_path(lm, run_dir), "revision": cfg.get("language_model_revision"),
                       "local": where(lm)["local"], "sha256": provenance["supplied"]["base_model"]},
        "precision": str(cfg.get("precision", "fp32")).lower(),
        "frozen_sha256": provenance["frozen_sha256"],  # every frozen tensor before training; checked after
        "target_tokens": provenance["target_tokens"],
        "memory_estimate": provenance["memory_estimate"],
        "embeddings": portable_path(cfg.get("embeddings"), run_dir),
        "trainable_parameters": trainable,
        "global_step": trainer.state.global_step,
        "train_loss": whole_run_loss(trainer.state, result.training_loss),
        "seconds": round(seconds, 1),
        "versions": {n: pkg(n) for n in ("torch", "transformers", "trl", "peft", "accelerate", "datasets")},
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def render_card(info: dict[str, Any], cfg: dict[str, Any]) -> str:
    stage = info["stage"]
    recipe = (f"stage 1: projector only, `{cfg['dataset_config']}`, {cfg['num_train_epochs']} epochs"
              if stage == 1 else
              f"stage 2 from `{info['init_from']}`: projector + LoRA r={(cfg.get('lora') or {}).get('r', 32)} "
              f"alpha={(cfg.get('lora') or {}).get('alpha', 32)} on q/k/v/o, `{cfg['dataset_config']}`, "
              f"{cfg['num_train_epochs']} epochs")
    values = {
        "base_model": info["base_model"]["id"],
        "audio_encoder": f"{info['audio_encoder']['name']} ({info['audio_encoder']['path']})",
        "encoder_sha256": info["audio_encoder"]["sha256"],
        "dataset": info["dataset"]["id"],
        "build_id": info["dataset"]["build_id"],
        "test_ids_sha256": info["dataset"]["test_ids_sha256"],
        "stage": stage,
        "inputs": info["inputs"],
        "recipe": recipe,
        "learning_rate": cfg["learning_rate"],
        "batch_size": cfg["batch_size"],
        "seed": info["seed"],
        "steps": info["global_step"],
        "train_loss": f"{info['train_loss']:.4f}",
        "tokens_per_audio": info["tokens_per_audio"],
        "git_sha": info["git_sha"],
        "version": info["mv4all_version"],
        "precision": info["precision"],
        "max_new_tokens": generation_max_new_tokens(info["target_tokens"]),
    }
    return string.Template(CARD_TEMPLATE.read_text(encoding="utf-8")).safe_substitute(values)


# --------------------------------------------------------------------------- command line


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--stage", required=True, type=int, choices=(1, 2))
    parser.add_argument("--inputs", help="prompt fields: 1+2+3+4, 2+3, ... or none [stage 1: 1]")
    parser.add_argument("--output-dir", help="run directory ({inputs} is replaced)")
    parser.add_argument("--init-from", help="stage 2: the stage-1 run directory")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (overrides epochs)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--dataset", help="built dataset folder or Hub id")
    parser.add_argument("--embeddings", help="embedding cache from `mv4all embed`")
    parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --output-dir that is not an mv4all run (its files are kept)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other config key (YAML value syntax), repeatable")
    return parser


def main(args: argparse.Namespace) -> Path:
    overrides = {"inputs": args.inputs, "output_dir": args.output_dir, "init_from": args.init_from,
                 "max_steps": args.max_steps, "seed": args.seed, "dataset": args.dataset,
                 "embeddings": args.embeddings, "resume": args.resume or None, "overwrite": args.overwrite or None}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key.strip()] = yaml.safe_load(value)
    try:
        run_dir = train(args.config, args.stage, overrides)
    except Exception as exc:  # noqa: BLE001 - one line for the user; MV4ALL_DEBUG=1 for the traceback
        if os.environ.get("MV4ALL_DEBUG"):
            raise
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {text}", file=sys.stderr)
        raise SystemExit(2) from None
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run directory: {run_dir}")
    return run_dir


if __name__ == "__main__":
    main(make_parser().parse_args())
