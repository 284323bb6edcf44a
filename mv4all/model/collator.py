"""Turn dataset rows into model batches: prompt, tokens, loss mask and audio.

Prompt tokens and the audio come from ``MV4AllProcessor`` (the one path training, evaluation and
``describe`` share); the collator adds what batching needs: cutting to ``max_length``, padding
(left for generation), the loss mask, and the audio source (the embedding cache, the dataset's
audio folder, or features already on the row). The prompt is the NExT-GPT/DeepResonance template
``<s>{inputs}### Human: {instruction}\\n### Assistant: {output}\\n###``; the loss covers the
output only.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from ..inputs import ALL, Combination, parse_combination
from .processing import IGNORE_INDEX, MV4AllProcessor, add_audio_token

__all__ = ["IGNORE_INDEX", "MV4AllCollator", "add_audio_token"]


@dataclass
class MV4AllCollator:
    """Collate rows (``Example`` dicts or ``datasets`` rows) for training or generation.

    processor: the model's ``MV4AllProcessor`` (tokenizer with ``<audio>``, audio preprocessing), or any processor
        with its interface (``mv4all.model.audio_lm.AudioLMProcessor`` for a transformers audio LLM).
    combination: which modalities the prompt shows ("1+2+3+4", "2+3", "none", ...).
    instruction: fixed instruction; ``None`` reads the row's ``instruction`` (else the MV one).
    target_field: the output column (``mv_description_text``; ``music_caption`` for stage 1).
    audio_embeddings: the embedding cache, ``id -> [n_clips, D]``; training then never runs the encoder.
    audio_root: the folder the rows' ``audio`` paths are relative to; the processor decodes them.
    audio_features: ``row -> [n_clips, ...]`` encoder input from elsewhere (tests, custom sources).
    Without any of these, rows may carry ``audio_embeds`` or ``input_features`` themselves.
    max_length: longer examples are cut from the right with a warning.
    inference: prompts only (no output, no labels), left-padded for batched ``generate``.
    """

    processor: MV4AllProcessor
    combination: str | Combination = ALL
    instruction: str | None = None
    target_field: str = "mv_description_text"
    audio_embeddings: Mapping[str, Any] | None = None
    audio_root: str | os.PathLike | None = None
    audio_features: Callable[[Mapping[str, Any]], Any] | None = None
    max_length: int | None = 2048
    inference: bool = False
    id_field: str = "id"

    def __post_init__(self):
        if not hasattr(self.processor, "prompt_ids"):  # a bare tokenizer: text and one audio token
            self.processor = MV4AllProcessor(self.processor)
        self.tokenizer = self.processor.tokenizer
        self.audio_tokens = self.processor.audio_tokens
        self.combination = parse_combination(self.combination)
        self.audio_token_id = self.processor.audio_token_id
        if self.combination.uses_audio and self.audio_token_id in (None, self.tokenizer.unk_token_id):
            raise ValueError("the tokenizer has no <audio> token: call add_audio_token(tokenizer) first")

    @classmethod
    def for_model(cls, tokenizer, config, **kwargs) -> "MV4AllCollator":
        """A collator whose processor matches the model config (``audio_tokens``, encoder, clips)."""
        return cls(MV4AllProcessor.from_config(tokenizer, config), **kwargs)

    # ------------------------------------------------------------------ one row

    def encode(self, row: Mapping[str, Any]) -> tuple[list[int], list[int]]:
        """``(input_ids, labels)`` of one row; labels are -100 outside the output."""
        output = None if self.inference else (_get(row, self.target_field) or "")
        ids, labels = self.processor.prompt_ids(row, self.combination, self.instruction, output=output)
        if self.max_length is not None and len(ids) > self.max_length:
            warnings.warn(
                f"example {_get(row, self.id_field)!r} has {len(ids)} tokens; "
                f"truncated to max_length={self.max_length}",
                stacklevel=3,
            )
            ids, labels = ids[: self.max_length], labels[: self.max_length]
            wanted = self.audio_tokens if self.combination.uses_audio else 0
            if ids.count(self.audio_token_id) != wanted:
                raise ValueError(f"max_length={self.max_length} cuts into the audio placeholders")
        return ids, labels

    def length_stats(self, rows) -> dict[str, int]:
        """Token counts over ``rows``: targets (output + end marker) and whole examples, as n/p50/p99/max.

        A run sizes its ``max_new_tokens`` and its memory estimate from these.
        """
        targets, totals = [], []
        for row in rows:
            ids, labels = self.encode(row)
            targets.append(sum(1 for t in labels if t != IGNORE_INDEX))
            totals.append(len(ids))
        if not targets:
            return {"n": 0}

        def pct(values, q):
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

        return {"n": len(targets), "target_p50": pct(targets, 0.5), "target_p99": pct(targets, 0.99),
                "target_max": max(targets), "example_p99": pct(totals, 0.99), "example_max": max(totals)}

    def audio_for(self, row: Mapping[str, Any]) -> tuple[str, torch.Tensor]:
        """``("audio_embeds" | "input_features", tensor)`` for one row."""
        if self.audio_embeddings is not None:
            key = _get(row, self.id_field)
            try:
                value = self.audio_embeddings[key]
            except KeyError:
                raise KeyError(f"no cached audio embedding for id {key!r}: run `mv4all embed` for this split") from None
            return "audio_embeds", _tensor(value)
        if self.audio_features is not None:
            return "input_features", _tensor(self.audio_features(row))
        if self.audio_root is not None:
            return "input_features", self.processor.row_features(row, self.audio_root)
        for name in ("audio_embeds", "input_features"):
            if _get(row, name) is not None:
                return name, _tensor(_get(row, name))
        raise ValueError(
            f"combination {self.combination} includes music but row {_get(row, self.id_field)!r} has no audio: "
            "give the collator audio_embeddings (cache) or audio_root"
        )

    # ------------------------------------------------------------------ batch

    def __call__(self, rows: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        encoded = [self.encode(row) for row in rows]
        batch = self._pad(encoded)
        if self.combination.uses_audio:
            audio = [self.audio_for(row) for row in rows]
            kinds = {kind for kind, _ in audio}
            if len(kinds) > 1:
                raise ValueError("a batch mixes cached embeddings and raw features")
            batch.update(self.processor.batch_audio(kinds.pop(), [value for _, value in audio]))
        return batch

    def _pad(self, encoded: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        width = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(encoded), width), dtype=torch.long)
        labels = torch.full((len(encoded), width), IGNORE_INDEX, dtype=torch.long)
        for i, (ids, lab) in enumerate(encoded):
            span = slice(width - len(ids), width) if self.inference else slice(0, len(ids))
            input_ids[i, span] = torch.tensor(ids)
            attention[i, span] = 1
            labels[i, span] = torch.tensor(lab)
        batch = {"input_ids": input_ids, "attention_mask": attention}
        if not self.inference:
            batch["labels"] = labels
        return batch


def _get(row: Any, name: str) -> Any:
    if isinstance(row, Mapping):
        return row.get(name)
    return getattr(row, name, None)


def _tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.float() if not value.is_floating_point() else value
    return torch.as_tensor(np.asarray(value, dtype=np.float32))
