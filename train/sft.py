"""Two-stage training of the music-to-MV-description model with TRL's SFTTrainer.

    accelerate launch train/sft.py --config train/configs/paper.yaml --stage 1
    accelerate launch train/sft.py --config train/configs/paper.yaml --stage 2 --inputs 1+2+3

Stage 1 trains the projector only (LLM and audio encoder frozen) on music captions; stage 2
starts from a stage-1 run (``init_from``) and trains projector + LoRA on MV descriptions, with
the prompt fields chosen by ``--inputs`` (any combination of 1-4, or ``none``): every row of the
paper's Table 1 is one command. The config's keys are described in ``train/arguments.py``; the run
folder it writes in ``mv4all.model.run`` (``save_run`` / ``load_run``).

``backbone: qwen2-audio`` (``train/configs/qwen2_audio.yaml``) trains a transformers audio LLM instead:
stage 2 only, from its checkpoint, LoRA on its language model with the audio tower frozen, prompts
through its own processor and chat template (``mv4all.model.audio_lm``); the same run folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from mv4all.model.stage_setup import (
    audio_lm_spec,
    audio_weights_sha256,
    build_stage_model,
    inherit_stage1,
    load_processing,
    prepare_model,
    prompt_processor,
    trainer_class,
)
from train.arguments import load_config, sft_config_kwargs

__all__ = ["build_stage_model", "load_config", "make_parser", "main", "prepare_model", "sft_config_kwargs", "train"]

# --------------------------------------------------------------------------- model and dataset
# The model side of each stage (which tokenizer, which model, what trains) is mv4all.model.stage_setup.


def load_train_set(cfg: dict[str, Any]):
    from mv4all.data import load_split

    ds = load_split(cfg["dataset"], cfg["dataset_config"], cfg["split"])
    keep = ["id", "audio", "genres", "mv_type", "lyrics_understanding", "instruction", cfg["target_field"]]
    return ds.select_columns([c for c in dict.fromkeys(keep) if c in ds.column_names])


def make_collator(processor, cfg: dict[str, Any], model=None):
    """Batches for training: prompt + target tokens, and the audio from the cache or the processor."""
    from mv4all.model import MV4AllCollator
    from mv4all.model.embedding_cache import EmbeddingCache
    from mv4all.model.run import weights_sha256

    audio = {}
    if model is not None and processor.uses_audio(cfg["inputs"]):
        if cfg["embeddings"]:
            audio["audio_embeddings"] = EmbeddingCache(cfg["embeddings"])
            spec = audio_lm_spec(cfg)
            if spec is not None:  # the tower's outputs (mv4all.model.audio_lm.build_tower_cache)
                from mv4all.model.audio_lm import check_tower_cache

                check_tower_cache(audio["audio_embeddings"], spec, model, cfg["precision"])
            else:
                audio["audio_embeddings"].check(model, weights_sha256(model.get_audio_encoder()))
        else:
            audio["audio_root"] = cfg["audio_root"]
    return MV4AllCollator(processor, combination=cfg["inputs"], instruction=cfg["instruction"],
                          target_field=cfg["target_field"], max_length=cfg["max_length"] if model else None, **audio)


# --------------------------------------------------------------------------- training


def train(config_path: str | Path, stage: int, overrides: dict[str, Any] | None = None, return_model: bool = False,
          callbacks: list | None = None):
    """Run one stage; returns the run directory (``return_model``: and the trained model, tokenizer).

    ``overrides`` beat the YAML (any config key); ``callbacks`` are extra ``TrainerCallback`` objects.
    """
    from transformers import set_seed
    from trl import SFTConfig

    from mv4all.model.integrity import frozen_fingerprint
    from mv4all.model.memory import estimate_for_config
    from mv4all.model.provenance import run_record
    from mv4all.model.run import save_run, whole_run_loss
    from mv4all.model.trainer import MetricsLog, last_complete_checkpoint
    from mv4all.model.weights import model_files_sha256
    from mv4all.safety import claim_folder

    cfg = load_config(config_path, stage, overrides)
    if cfg["num_threads"]:
        torch.set_num_threads(int(cfg["num_threads"]))
    run_dir, checkpoints = Path(cfg["output_dir"]), Path(cfg["output_dir"]) / "checkpoints"
    if stage == 2 and cfg.get("init_from"):  # the base weights and the encoder setup are the stage-1 run's
        inherit_stage1(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # one process claims; the others write only what rank 0 allows
        claim_folder(run_dir, "run", overwrite=cfg["overwrite"], legacy=("run.json",),
                     option="--overwrite (train/sft.py)")
    if not cfg["resume"] and any(checkpoints.glob("checkpoint-*")):
        raise FileExistsError(f"{run_dir} already has checkpoints: pass --resume, or another --output-dir")
    set_seed(int(cfg["seed"]))
    started = time.time()
    train_set = load_train_set(cfg)
    tokenizer = load_processing(cfg)  # an audio LLM: its processor
    stats = make_collator(prompt_processor(cfg, tokenizer), cfg).length_stats(train_set)
    estimate = estimate_for_config(cfg, stats)
    base, tokenizer = build_stage_model(cfg, tokenizer)
    model = prepare_model(base, cfg)
    supplied = {"audio_encoder": audio_weights_sha256(cfg, base),
                "base_model": model_files_sha256(cfg["language_model"], cfg["language_model_revision"])}
    # Frozen weights may end training cast to bf16/fp16 (DeepSpeed casts the whole module): accept exactly that.
    fingerprint = frozen_fingerprint(model, (torch.bfloat16, torch.float16)) if cfg["check_frozen"] else None
    trainer_cls, which = trainer_class(cfg)
    processor = prompt_processor(cfg, tokenizer, base)
    trainer = trainer_cls(
        model=model, args=SFTConfig(**sft_config_kwargs(cfg, checkpoints)), train_dataset=train_set,
        data_collator=make_collator(processor, cfg, base), processing_class=processor.tokenizer,
        callbacks=[MetricsLog(run_dir / "logs" / "metrics.jsonl"), *(callbacks or [])], **which)
    result = trainer.train(resume_from_checkpoint=last_complete_checkpoint(checkpoints) if cfg["resume"] else None)
    finished = trainer.is_world_process_zero() and trainer.state.global_step >= trainer.state.max_steps
    if trainer.is_world_process_zero():
        trainer.state.save_to_json(str(run_dir / "trainer_state.json"))
    if finished:  # an interrupted run keeps its checkpoints only
        if fingerprint is not None:
            fingerprint.check(model)
        provenance = {"supplied": supplied, "frozen_sha256": None if fingerprint is None else fingerprint.sha256,
                      "target_tokens": stats, "memory_estimate": estimate.to_dict(), "processor": tokenizer}
        record = run_record(cfg, model, run_dir, num_train=len(train_set), global_step=trainer.state.global_step,
                            train_loss=whole_run_loss(trainer.state.log_history, result.training_loss),
                            seconds=time.time() - started, provenance=provenance)
        save_run(run_dir, model=model, tokenizer=tokenizer, config=cfg, record=record)
    return (run_dir, model, tokenizer) if return_model else run_dir


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
