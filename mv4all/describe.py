"""Inference: a trained run (or a base LLM) + a song -> an MV description.

``mv4all describe`` (one song) and batch prediction over a dataset split (``mv4all.predict``, the
leaderboard's input) share the ``Describer`` so that a prediction file and a single-song answer come
from the same prompt, the same audio path (the model's ``MV4AllProcessor``) and the same decoding
settings (``mv4all.decoding``).

Audio is cut the way the training data was: Music4All clips are 30 s, so a longer song is
reduced to one deterministic 30 s window (centred unless ``start`` is given) and a shorter one
is zero-padded; both are reported instead of silently changing what the model hears.
Nothing here writes into a run folder unless asked (``--save-generation-config``).

This module never imports ``builders``: the lyrics-understanding step is a callable passed in
by the composition root (``mv4all.cli``).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .audio import AudioDecodeError
from .decoding import (
    DEFAULT_MAX_NEW_TOKENS,
    GENERATION_CONFIG_FILE,
    STOP,
    Decoding,
    clean_generation,
    load_generation_config,
    save_generation_config,
)
from .inputs import MV_INSTRUCTION, parse_combination
from .model.processing import WINDOW_SECONDS, AudioWindow, MV4AllProcessor, window_audio
from .predict import ROW_COLUMNS, done_ids, load_split, merge_parts, part_path, predict_split
from .schema import MVDescription, Prediction

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "GENERATION_CONFIG_FILE",
    "ROW_COLUMNS",
    "STOP",
    "WINDOW_SECONDS",
    "AudioDecodeError",
    "AudioWindow",
    "Decoding",
    "Describer",
    "build_row",
    "clean_generation",
    "done_ids",
    "load_generation_config",
    "load_split",
    "merge_parts",
    "parse_description",
    "part_path",
    "predict_split",
    "save_generation_config",
    "window_audio",
]


# --------------------------------------------------------------------------- rows and parsing


def build_row(
    clip_id: str,
    genres: Sequence[str] | None = None,
    mv_type: str | None = None,
    lyrics_understanding: str | None = None,
) -> dict[str, Any]:
    """A dataset-shaped row for ``render_prompt``; absent modalities stay empty (rendered "none")."""
    return {
        "id": clip_id,
        "genres": [g.strip() for g in (genres or []) if g and g.strip()],
        "mv_type": mv_type or "",
        "lyrics_understanding": lyrics_understanding or "",
        "instruction": MV_INSTRUCTION,
    }


def parse_description(text: str) -> dict[str, Any]:
    """Structured form for ``--json``; ``{"raw", "parse_error"}`` when the text is not well-formed."""
    try:
        parsed = MVDescription.parse(text)
    except Exception as exc:  # noqa: BLE001 - any parse failure is reported, not raised
        return {"raw": text, "parse_error": str(exc)}
    # ``parse`` is lenient (anything becomes an overview); a usable description has both parts.
    missing = [name for name, ok in (("Overview", parsed.overview), ("Frame-by-frame Breakdown", parsed.beats))
               if not ok]
    if missing:
        return {"raw": text, "parse_error": f"no {' and no '.join(missing)} found"}
    return parsed.model_dump()


# --------------------------------------------------------------------------- the model wrapper


def _sha256_files(paths: Iterable[Path]) -> str | None:
    digest = hashlib.sha256()
    found = False
    for path in sorted(paths):
        if path.is_file():
            found = True
            digest.update(path.name.encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest() if found else None


class Describer:
    """A loaded model with its prompt combination and decoding, ready for batched generation.

    Build it with ``from_run`` (a trained run directory or Hub id) or ``from_base_llm`` (the
    text-only baseline). ``inputs`` defaults to the combination the run was trained with.
    """

    def __init__(
        self,
        model,
        tokenizer,
        run_info: Mapping[str, Any] | None = None,
        *,
        inputs: str | None = None,
        decoding: Decoding | None = None,
        run_name: str | None = None,
        model_sha: str | None = None,
    ):
        self.model = model
        self.processing = tokenizer  # as given: a tokenizer, or an audio LLM's transformers processor
        self.run_info = dict(run_info or {})
        self.train_inputs = self.run_info.get("inputs")
        self.inputs = parse_combination(inputs if inputs is not None else (self.train_inputs or "1+2+3+4")).name
        self.decoding = decoding or Decoding()
        self.run_name = run_name
        self.model_sha = model_sha
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.base = base
        self.processor = _prompt_processor(base, tokenizer, self.run_info)
        self.tokenizer = tokenizer = self.processor.tokenizer
        self.multimodal = self.processor.has_audio
        if parse_combination(self.inputs).uses_audio and not self.multimodal:
            raise ValueError(f"inputs {self.inputs} include music but this model has no audio encoder")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_run(
        cls,
        run: str | os.PathLike,
        *,
        inputs: str | None = None,
        decoding: Decoding | None = None,
        overrides: Mapping[str, Any] | None = None,
        device: str | None = None,
        run_name: str | None = None,
        **load_kwargs: Any,
    ) -> Describer:
        """Load a run (``load_kwargs`` go to ``load_run``), whatever its backbone (``run.json`` says which).

        Decoding: ``decoding`` if given, else the run's ``generation_config.json`` with ``overrides``
        (``None`` values ignored) on top.
        """
        from .model.run import _local_run_dir, load_run

        run_dir = _local_run_dir(run)
        if decoding is None:
            decoding = (load_generation_config(run_dir) or Decoding()).replace(**dict(overrides or {}))
        model, tokenizer, info = load_run(run_dir, device=device, **load_kwargs)
        weights = list((run_dir / "stage2").glob("*.safetensors")) + list((run_dir / "stage1").glob("*.safetensors"))
        return cls(model, tokenizer, info, inputs=inputs, decoding=decoding, run_name=run_name or str(run),
                   model_sha=_sha256_files(weights))

    @classmethod
    def from_base_llm(
        cls,
        name_or_path: str | os.PathLike,
        *,
        inputs: str = "2+3+4",
        decoding: Decoding | None = None,
        device: str | None = None,
        run_name: str | None = None,
    ) -> Describer:
        """The text-only baseline: the base LLM alone, prompted with the same template."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path))
        if device:
            model.to(device)
        model.eval()
        weights = list(Path(str(name_or_path)).glob("*.safetensors")) if Path(str(name_or_path)).exists() else []
        info = {"inputs": None, "base_model": {"id": str(name_or_path)}}
        return cls(model, tokenizer, info, inputs=inputs, decoding=decoding or Decoding(),
                   run_name=run_name or str(name_or_path), model_sha=_sha256_files(weights))

    # ------------------------------------------------------------------ audio

    @property
    def sample_rate(self) -> int:
        return self.processor.sample_rate

    def audio_features(self, path: str | os.PathLike, start: float | None = None):
        """``(encoder input [n_clips, ...], AudioWindow)`` for one file (the processor's one audio path)."""
        return self.processor.audio_features(path, start)

    # ------------------------------------------------------------------ generation

    def _collator(self):
        from .model import MV4AllCollator

        return MV4AllCollator(self.processor, combination=self.inputs, inference=True, max_length=None)

    def generate(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Texts for rows (dataset-shaped; with ``input_features`` when the inputs include music).

        Rows are generated ``decoding.batch_size`` at a time, left-padded.
        """
        return [text for text, _ in self.generate_with_stops(rows)]

    def generate_with_stops(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, bool]]:
        """``(text, truncated)`` per row: ``truncated`` when ``max_new_tokens`` ended it, not the end marker."""
        import torch
        from transformers import LogitsProcessorList

        collator = self._collator()
        device = next(self.model.parameters()).device
        out: list[tuple[str, bool]] = []
        size = self.decoding.batch_size
        kwargs = self.decoding.generate_kwargs()
        ends = self.processor.end_token_ids
        stops = list(self.processor.stop_strings)
        if stops:  # the mv4all template ends an answer with "\n###"; a chat template with its end token
            kwargs.update(stop_strings=stops, tokenizer=self.tokenizer)
        for i in range(0, len(rows), size):
            batch = collator(list(rows[i : i + size]))
            batch = {k: v.to(device) for k, v in batch.items()}
            if "input_features" in batch:
                batch["input_features"] = batch["input_features"].to(next(self.base.parameters()).dtype)
            if self.decoding.strategy == "sample":
                torch.manual_seed(int(self.decoding.seed) + i)
            processors = self.decoding.logits_processors(batch["input_ids"].shape[1])
            with torch.inference_mode():
                generated = self.model.generate(
                    **batch, **kwargs, pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=ends[0] if len(ends) == 1 else ends,
                    **({"logits_processor": LogitsProcessorList(processors)} if processors else {}),
                )
            new = generated[:, batch["input_ids"].shape[1] :]
            end_ids = torch.tensor([e for e in ends if e is not None], dtype=torch.long, device=new.device)
            for ids, raw in zip(new, self.tokenizer.batch_decode(new, skip_special_tokens=True)):
                ended = any(stop in raw for stop in stops) or bool(torch.isin(ids, end_ids).any())
                out.append((clean_generation(raw), not ended and len(ids) >= int(self.decoding.max_new_tokens)))
        return out

    def describe(
        self,
        audio: str | os.PathLike | None,
        *,
        genres: Sequence[str] | None = None,
        mv_type: str | None = None,
        lyrics_understanding: str | None = None,
        start: float | None = None,
        clip_id: str | None = None,
    ) -> tuple[str, AudioWindow | None]:
        """One song -> ``(description text, the audio window heard)``."""
        row = build_row(clip_id or (Path(audio).stem if audio else "song"), genres, mv_type, lyrics_understanding)
        window = None
        if parse_combination(self.inputs).uses_audio:
            if audio is None:
                raise ValueError(f"inputs {self.inputs} include music: give an audio file")
            row["input_features"], window = self.audio_features(audio, start)
        return self.generate([row])[0], window

    # ------------------------------------------------------------------ provenance

    def prediction(self, row: Mapping[str, Any], text: str, truncated: bool | None = None) -> Prediction:
        return Prediction(
            id=row["id"], prediction=text, reference=row.get("mv_description_text"), run=self.run_name,
            train_inputs=self.train_inputs, eval_inputs=self.inputs, decoding=self.decoding.record(),
            seed=int(self.decoding.seed), model_sha=self.model_sha, truncated=truncated,
        )


def _prompt_processor(base, processing, run_info: Mapping[str, Any]):
    """The prompt/audio processor of a loaded model: ``MV4AllProcessor`` for mv4all models and base LLMs,
    ``AudioLMProcessor`` for a transformers audio LLM (its backbone from ``run.json``, else from the model)."""
    from .model.backbones import BACKBONES, backbone_of

    spec = backbone_of(run_info) if run_info.get("backbone") else next(
        (b for b in BACKBONES.values() if b.kind == "audio_lm" and type(base).__name__ == b.model_class), None)
    if spec is not None and spec.kind == "audio_lm":
        from .model.audio_lm import AudioLMProcessor

        if isinstance(processing, AudioLMProcessor):
            return processing
        if not hasattr(processing, "feature_extractor"):
            raise ValueError(f"a {spec.name} model needs its processor (tokenizer + feature extractor), "
                             "not a tokenizer")
        return AudioLMProcessor(processing, spec)
    return MV4AllProcessor.from_model(base, processing)


def warn_parse(result: dict[str, Any]) -> None:
    if "parse_error" in result:
        warnings.warn(f"the generated text is not a well-formed MV description: {result['parse_error']}",
                      stacklevel=2)
