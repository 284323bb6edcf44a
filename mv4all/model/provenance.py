"""What a finished run records about itself: ``run.json`` (provenance) and its model card.

``save_run`` (``mv4all.model.run``) writes both; they live here because they gather facts from everywhere
(package versions, the git commit, the dataset's build id and test split, the base weights' hashes) and
render the card template, while the run folder itself only needs to know where each file goes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .run import AUDIO_LM_CARD_TEMPLATE, CARD_TEMPLATE, generation_max_new_tokens, ids_sha256, portable_path


def run_record(config: dict[str, Any], model, run_dir: str | os.PathLike, *, num_train: int, global_step: int,
               train_loss: float, seconds: float, provenance: dict[str, Any]) -> dict[str, Any]:
    """``run.json``: what was trained, from what (base weights by id/path + sha256), how, and its figures."""
    import platform
    import time
    from importlib.metadata import PackageNotFoundError, version

    def pkg(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    def where(value):
        return {"local": value is not None and Path(str(value)).exists(),
                "file": None if value is None else Path(str(value)).name}

    from .backbones import backbone_of

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    mc = base.config
    encoder_path, lm = config.get("audio_encoder_path"), config["language_model"]
    spec = backbone_of(config)
    if spec.kind == "audio_lm":  # the tower is part of the base checkpoint; the processor comes with the record
        from .audio_lm import audio_lm_record

        parts = audio_lm_record(model, spec, provenance["processor"], provenance["supplied"]["audio_encoder"], where,
                                lm, portable_path(lm, run_dir))
    else:
        parts = {
            "audio_encoder": {"name": mc.audio_encoder, "path": portable_path(encoder_path, run_dir),
                              **where(encoder_path),
                              "sha256": provenance["supplied"]["audio_encoder"]},  # as supplied, before any cast
            "tokens_per_audio": mc.tokens_per_audio,
            "model": {"tokens_per_audio": mc.tokens_per_audio, "clips_per_audio": mc.clips_per_audio,
                      "clip_sampler": mc.clip_sampler, "projector_type": mc.projector_type,
                      "audio_token_id": mc.audio_token_id, "hidden_size": mc.text_config.hidden_size},
        }
    return {
        "mv4all_version": pkg("mv4all"),
        "git_sha": _git_sha(),
        "backbone": spec.name,
        "seed": int(config["seed"]),
        "stage": int(config["stage"]),
        "inputs": config["inputs"],
        "init_from": portable_path(config.get("init_from"), run_dir),
        "dataset": {"id": portable_path(config["dataset"], run_dir), "config": config["dataset_config"],
                    "num_train": num_train, **_dataset_facts(config["dataset"])},
        **parts,
        "base_model": {"id": portable_path(lm, run_dir), "revision": config.get("language_model_revision"),
                       "local": where(lm)["local"], "sha256": provenance["supplied"]["base_model"]},
        "precision": str(config.get("precision", "fp32")).lower(),
        "frozen_sha256": provenance["frozen_sha256"],  # every frozen tensor before training; checked after
        "target_tokens": provenance["target_tokens"],
        "memory_estimate": provenance["memory_estimate"],
        "embeddings": portable_path(config.get("embeddings"), run_dir),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "global_step": global_step,
        "train_loss": train_loss,
        "seconds": round(seconds, 1),
        "versions": {n: pkg(n) for n in ("torch", "transformers", "trl", "peft", "accelerate", "datasets")},
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def render_model_card(record: dict[str, Any], config: dict[str, Any]) -> str:
    """The run's README.md from ``mv4all/templates/model_card.md``."""
    import importlib.resources
    import string

    from .backbones import backbone_of

    stage = record["stage"]
    lora = config.get("lora") or {}
    spec = backbone_of(record)
    recipe = (f"stage 1: projector only, `{config['dataset_config']}`, {config['num_train_epochs']} epochs"
              if stage == 1 else
              f"stage 2 from `{record['init_from']}`: projector + LoRA r={lora.get('r', 32)} "
              f"alpha={lora.get('alpha', 32)} on q/k/v/o, `{config['dataset_config']}`, "
              f"{config['num_train_epochs']} epochs")
    template_name = CARD_TEMPLATE
    if spec.kind == "audio_lm":
        full = (record.get("model") or {}).get("trained_in_full") or []
        recipe = (f"stage 2 from the base checkpoint (no stage 1: {spec.name} is aligned to audio already): LoRA "
                  f"r={lora.get('r', 32)} alpha={lora.get('alpha', 32)} on "
                  f"`{lora.get('target_modules') or spec.lora_target_modules}`"
                  + (f", {', '.join(full)} trained in full" if full else "")
                  + f", `{config['dataset_config']}`, {config['num_train_epochs']} epochs")
        template_name = AUDIO_LM_CARD_TEMPLATE
    values = {
        "base_model": record["base_model"]["id"],
        "audio_encoder": f"{record['audio_encoder']['name']} ({record['audio_encoder']['path']})",
        "encoder_sha256": record["audio_encoder"]["sha256"],
        "dataset": record["dataset"]["id"],
        "build_id": record["dataset"]["build_id"],
        "test_ids_sha256": record["dataset"]["test_ids_sha256"],
        "stage": stage,
        "inputs": record["inputs"],
        "recipe": recipe,
        "learning_rate": config["learning_rate"],
        "batch_size": config["per_device_train_batch_size"],
        "seed": record["seed"],
        "steps": record["global_step"],
        "train_loss": f"{record['train_loss']:.4f}",
        "tokens_per_audio": record["tokens_per_audio"],
        "git_sha": record["git_sha"],
        "version": record["mv4all_version"],
        "precision": record["precision"],
        "max_new_tokens": generation_max_new_tokens(record["target_tokens"]),
        "backbone": spec.name,
        "backbone_description": spec.description,
        "licence": getattr(spec, "licence", "") or "see the base model's card",
    }
    template = importlib.resources.files("mv4all") / "templates" / template_name
    return string.Template(template.read_text(encoding="utf-8")).safe_substitute(values)


def _git_sha() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                              text=True, check=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _dataset_facts(dataset: str | os.PathLike) -> dict[str, Any]:
    """Build id and test-split identity of the training data (what the leaderboard compares)."""
    from ..data import load_split, read_build_info

    info = read_build_info(dataset)
    build_id = info.get("build_id") if info else None
    try:
        test_ids = list(load_split(dataset, "mv_description", "test")["id"])
    except (ValueError, FileNotFoundError):
        test_ids = []
    return {"build_id": build_id, "test_ids_sha256": ids_sha256(test_ids), "num_test": len(test_ids)}
