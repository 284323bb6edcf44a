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
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

STAGE_KEYS = ("stage1", "stage2")

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
    extra = {"target_modules": lora["target_modules"]} if lora.get("target_modules") else {}
    if lora.get("modules_to_save"):  # trained in full next to the adapters (the projector always is)
        extra["modules_to_save"] = ["projector", *lora["modules_to_save"]]
    model = get_peft_model(model, lora_config(r=lora.get("r", 32), alpha=lora.get("alpha", 32),
                                              dropout=lora.get("dropout", 0.1), **extra))
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


def memory_estimate(cfg: dict[str, Any], stats: dict[str, int]):
    """This stage's peak memory from configs (no weights loaded), printed; refuse when it cannot fit."""
    from mv4all.model.memory import check_fits, estimate_mv4all

    length = int(stats.get("example_max") or cfg.get("max_length") or 2048)
    lora = cfg.get("lora") or {}
    estimate = estimate_mv4all(
        cfg["language_model"], revision=cfg.get("language_model_revision"), audio_encoder=cfg["audio_encoder"],
        tokens_per_audio=cfg.get("tokens_per_audio", 1), projector_type=cfg.get("projector_type", "linear"),
        weight_dtype=_dtype(cfg), sequence_length=min(length, int(cfg.get("max_length") or length)),
        batch_size=int(cfg["batch_size"]), gradient_checkpointing=bool(cfg.get("gradient_checkpointing")),
        lora_r=int(lora.get("r", 32)) if cfg["stage"] == 2 else None, lora_pattern=lora.get("target_modules"))
    check_fits(estimate, refuse=cfg.get("memory_check", True))
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
    from mv4all.model.run import load_tokenizer, run_record, save_run, weights_sha256, whole_run_loss
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
    from mv4all.model import MV4AllCollator, MV4AllConfig

    stats = MV4AllCollator.for_model(
        tokenizer, MV4AllConfig(audio_encoder=cfg["audio_encoder"], tokens_per_audio=cfg.get("tokens_per_audio", 1)),
        combination=cfg["inputs"], instruction=cfg.get("instruction"), target_field=cfg["target_field"],
        max_length=None).length_stats(train_set)
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
    record = run_record(cfg, model, run_dir, num_train=len(train_set), global_step=trainer.state.global_step,
                        train_loss=whole_run_loss(trainer.state.log_history, result.training_loss),
                        seconds=time.time() - started, provenance=provenance)
    save_run(run_dir, model=model, tokenizer=tokenizer, config=cfg, record=record)
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


def _base_model_sha256(cfg: dict[str, Any]) -> str | None:
    from mv4all.model.weights import model_files_sha256

    return model_files_sha256(cfg["language_model"], cfg.get("language_model_revision"))


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
