"""The TRL trainer of both stages, and what it logs.

``MV4AllTrainer`` differs from ``SFTTrainer`` only in what a checkpoint holds: what trains (the
projector in stage 1, adapter + projector in stage 2), never the frozen 7B LLM. transformers drops
frozen weights from checkpoints only for PEFT models, and DeepSpeed writes its own copy of the whole
module; both would store the frozen LLM at every save.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback
from trl import SFTTrainer

from ..safety import atomic_write_text
from .run import PROJECTOR_FILE, load_projector, save_projector


class MV4AllTrainer(SFTTrainer):
    """``SFTTrainer`` whose checkpoints hold the trained parameters of ``stage`` (1 or 2) only."""

    def __init__(self, *args, stage: int, **kwargs):
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        self.stage = stage
        super().__init__(*args, **kwargs)

    def _save(self, output_dir=None, state_dict=None):
        if not self.args.should_save:
            return
        model = self.accelerator.unwrap_model(self.model)
        if self.stage == 1:
            save_projector(model, output_dir or self.args.output_dir)
        else:  # adapter + projector; the <audio> embedding rows are rebuilt deterministically
            model.save_pretrained(output_dir or self.args.output_dir, save_embedding_layers=False)

    def _save_optimizer_and_scheduler(self, output_dir):
        if self.is_deepspeed_enabled and self.stage == 1:
            self.model_wrapped.save_checkpoint(output_dir, exclude_frozen_parameters=True)
            return
        super()._save_optimizer_and_scheduler(output_dir)

    def _prepare_for_training(self, max_steps, train_dataloader, resume_from_checkpoint):
        if not (self.is_deepspeed_enabled and self.stage == 1 and resume_from_checkpoint):
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
        if self.stage == 2:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        load_projector(self.accelerator.unwrap_model(model or self.model),
                       Path(resume_from_checkpoint) / PROJECTOR_FILE)


class MetricsLog(TrainerCallback):
    """Every logged step as one JSON line in ``path`` (the run's ``logs/metrics.jsonl``), on rank 0."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs):
        # A resumed run redoes the steps after its checkpoint: drop their old lines, keep the rest.
        if state.is_world_process_zero and state.global_step > 0 and self.path.is_file():
            kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= state.global_step]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest ``checkpoint-N`` whose save finished (transformers writes ``trainer_state.json`` last).

    A process killed while saving leaves an incomplete folder; resuming from it would fail or, worse,
    load half a state, so it is skipped with a note.
    """
    checkpoints = Path(checkpoints)
    found = sorted((p for p in checkpoints.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True) if checkpoints.is_dir() else []
    for folder in found:
        if (folder / "trainer_state.json").is_file():
            return str(folder)
        print(f"skipping incomplete checkpoint {folder} (its save did not finish)", flush=True)
    return None
