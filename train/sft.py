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
import platform
import string
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
CARD_TEMPLATE = REPO / "model_card.md"
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
        raise ValueError("stage 2 needs init_from: the stage-1 run directory")
    return cfg


def _dtype(cfg) -> torch.dtype | None:
    precision = cfg.get("precision", "fp32")
    if not torch.cuda.is_available() or precision == "fp32":
        return None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def trainer_kwargs(cfg: dict[str, Any], output_dir: str | Path) -> dict[str, Any]:
    """SFTConfig arguments for this stage (kept as a dict so the recipe can be checked without a GPU)."""
    on_gpu = torch.cuda.is_available()
    precision = cfg.get("precision", "fp32") if on_gpu else "fp32"
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
        **({"gradient_checkpointing": True} if cfg.get("gradient_checkpointing") else {}),
    )


# --------------------------------------------------------------------------- model


def build_stage_model(cfg: dict[str, Any]):
    """Stage 1: base LLM + encoder + fresh projector. Stage 2: the stage-1 run. Returns (model, tokenizer)."""
    from mv4all.model.run import build_model, load_run, load_tokenizer

    if cfg["stage"] == 1:
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
    from mv4all.model.embedding_cache import load_split

    ds = load_split(cfg["dataset"], cfg["dataset_config"], cfg.get("split", "train"))
    keep = ["id", "audio", "genres", "mv_type", "lyrics_understanding", "instruction", cfg["target_field"]]
    return ds.select_columns([c for c in dict.fromkeys(keep) if c in ds.column_names])


# --------------------------------------------------------------------------- trainer


def _trainer_class(stage: int):
    from transformers import TrainerCallback
    from trl import SFTTrainer

    class MV4AllTrainer(SFTTrainer):
        """Stage 1 checkpoints hold the projector only (not a copy of the frozen 7B LLM)."""

        def _save(self, output_dir=None, state_dict=None):
            from mv4all.model.run import save_projector

            if not self.args.should_save:
                return
            model = self.accelerator.unwrap_model(self.model)
            if stage == 1:
                save_projector(model, output_dir or self.args.output_dir)
            else:  # adapter + projector; the <audio> embedding rows are rebuilt deterministically
                model.save_pretrained(output_dir or self.args.output_dir, save_embedding_layers=False)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            if stage == 2:
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            from mv4all.model.run import PROJECTOR_FILE, load_projector

            load_projector(self.accelerator.unwrap_model(model or self.model),
                           Path(resume_from_checkpoint) / PROJECTOR_FILE)

    class MetricsLog(TrainerCallback):
        def __init__(self, path: Path):
            self.path = path

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")

    class StopAfter(TrainerCallback):
        """Simulated interruption (tests): checkpoint at step k, then stop."""

        def __init__(self, step: int):
            self.step = step

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= self.step:
                control.should_save = True
                control.should_training_stop = True

    return MV4AllTrainer, MetricsLog, StopAfter


def train(config_path: str | Path, stage: int, overrides: dict[str, Any] | None = None, return_model: bool = False):
    """Run one stage; returns the run directory (``return_model``: and the trained model, tokenizer).

    ``overrides`` beat the YAML (e.g. ``max_steps``, ``output_dir``, ``inputs``, ``init_from``, ``resume``).
    """
    from transformers import set_seed
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig

    cfg = load_config(config_path, stage, overrides)
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg["num_threads"]))
    run_dir = Path(cfg["output_dir"])
    checkpoints = run_dir / "checkpoints"
    resume = bool(cfg.get("resume"))
    if not resume and checkpoints.exists() and any(checkpoints.glob("checkpoint-*")):
        raise FileExistsError(f"{run_dir} already has checkpoints: pass --resume, or another --output-dir")
    set_seed(int(cfg["seed"]))
    started = time.time()
    model, tokenizer = build_stage_model(cfg)
    model = prepare_model(model, cfg)
    base = model.get_base_model() if stage == 2 else model
    frozen_hash = frozen_sha256(model) if cfg.get("check_frozen", True) else None
    args = SFTConfig(**trainer_kwargs(cfg, checkpoints))
    trainer_cls, metrics_log, stop_after = _trainer_class(stage)
    callbacks = [metrics_log(run_dir / "logs" / "metrics.jsonl")]
    if cfg.get("stop_after_steps"):
        callbacks.append(stop_after(int(cfg["stop_after_steps"])))
    trainer = trainer_cls(
        model=model, args=args, train_dataset=load_train_set(cfg), data_collator=make_collator(base, tokenizer, cfg),
        processing_class=tokenizer, callbacks=callbacks,
    )
    last = get_last_checkpoint(str(checkpoints)) if resume and checkpoints.exists() else None
    result = trainer.train(resume_from_checkpoint=last)
    if not trainer.is_world_process_zero():
        return (run_dir, model, tokenizer) if return_model else run_dir
    trainer.state.save_to_json(str(run_dir / "trainer_state.json"))
    if trainer.state.global_step < trainer.state.max_steps:  # interrupted: checkpoints only
        return (run_dir, model, tokenizer) if return_model else run_dir
    if frozen_hash is not None and frozen_sha256(model) != frozen_hash:
        raise RuntimeError("a frozen parameter changed during training")
    _finish_run(model, base, tokenizer, cfg, run_dir, trainer, result, time.time() - started, frozen_hash)
    return (run_dir, model, tokenizer) if return_model else run_dir


def frozen_sha256(model) -> str:
    """sha256 over every frozen parameter (names, shapes, bytes): must not change during training."""
    import hashlib

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad and not p.is_meta:
                t = p.detach().cpu().contiguous().reshape(-1)
                digest.update(f"{name}|{t.dtype}|{tuple(p.shape)}\n".encode())
                digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- run directory


def _finish_run(model, base, tokenizer, cfg, run_dir: Path, trainer, result, seconds: float,
                frozen_hash: str | None = None) -> None:
    from mv4all.model.run import STAGE1_DIR, STAGE2_DIR, TOKENIZER_DIR, portable_path, save_config, save_projector

    if cfg["stage"] == 1:
        save_projector(base, run_dir / STAGE1_DIR)
    else:
        peft_cfg = model.peft_config["default"]
        peft_cfg.base_model_name_or_path = portable_path(cfg["language_model"], run_dir / STAGE2_DIR)
        model.save_pretrained(str(run_dir / STAGE2_DIR), save_embedding_layers=False)
        save_config(base.config, run_dir / STAGE2_DIR)
    tokenizer.save_pretrained(str(run_dir / TOKENIZER_DIR))
    resolved = {k: (portable_path(v, run_dir) if k in PATH_KEYS and v else v) for k, v in cfg.items()
                if k not in ("resume", "stop_after_steps", "disable_tqdm")}
    (run_dir / "config.yaml").write_text(
        "# resolved training config; local paths are relative to this run directory\n"
        + yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
    info = run_info(cfg, base, run_dir, trainer, result, seconds)
    info["frozen_sha256"] = frozen_hash  # before training; checked equal after
    (run_dir / "run.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    (run_dir / "README.md").write_text(render_card(info, cfg), encoding="utf-8")


def _git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def _dataset_info(cfg) -> dict[str, Any]:
    from mv4all.model.embedding_cache import load_split
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


def run_info(cfg, base, run_dir: Path, trainer, result, seconds: float) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    from mv4all.model.run import portable_path, weights_sha256

    def pkg(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    mc = base.config
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    return {
        "mv4all_version": pkg("mv4all"),
        "git_sha": _git_sha(),
        "seed": int(cfg["seed"]),
        "stage": int(cfg["stage"]),
        "inputs": cfg["inputs"],
        "init_from": portable_path(cfg.get("init_from"), run_dir),
        "dataset": {"id": portable_path(cfg["dataset"], run_dir), "config": cfg["dataset_config"],
                    "num_train": len(trainer.train_dataset), **_dataset_info(cfg)},
        "audio_encoder": {"name": mc.audio_encoder, "path": portable_path(cfg.get("audio_encoder_path"), run_dir),
                          "sha256": weights_sha256(base.get_audio_encoder())},
        "tokens_per_audio": mc.tokens_per_audio,
        "model": {"tokens_per_audio": mc.tokens_per_audio, "clips_per_audio": mc.clips_per_audio,
                  "clip_sampler": mc.clip_sampler, "projector_type": mc.projector_type,
                  "audio_token_id": mc.audio_token_id, "hidden_size": mc.text_config.hidden_size},
        "base_model": {"id": portable_path(cfg["language_model"], run_dir),
                       "revision": cfg.get("language_model_revision")},
        "embeddings": portable_path(cfg.get("embeddings"), run_dir),
        "trainable_parameters": trainable,
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
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
    }
    return string.Template(CARD_TEMPLATE.read_text(encoding="utf-8")).safe_substitute(values)


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> Path:
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
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other config key (YAML value syntax), repeatable")
    args = parser.parse_args(argv)
    overrides = {"inputs": args.inputs, "output_dir": args.output_dir, "init_from": args.init_from,
                 "max_steps": args.max_steps, "seed": args.seed, "dataset": args.dataset,
                 "embeddings": args.embeddings, "resume": args.resume or None}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key.strip()] = yaml.safe_load(value)
    run_dir = train(args.config, args.stage, overrides)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run directory: {run_dir}")
    return run_dir


if __name__ == "__main__":
    main()
