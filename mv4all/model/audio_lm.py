"""Transformers audio LLMs (Qwen2-Audio, ...) as mv4all backbones: prompts, audio, training, runs, cache.

The same contracts as the mv4all model, through the model's own processor and chat template:

- ``AudioLMProcessor`` has ``MV4AllProcessor``'s interface (``prompt_ids``, ``audio_features``,
  ``row_features``, ...), so ``MV4AllCollator``, ``Describer`` and batch prediction use it unchanged.
  Inputs ② ③ ④ are rendered by ``mv4all.inputs.render_inputs`` (the code every backbone shares) into
  the user turn; ① is the model's own audio entry of the chat template (``<|audio_bos|><|AUDIO|><|audio_eos|>``),
  its placeholder expanded to one token per audio frame (750 for Qwen2-Audio's 30 s window). The
  assistant turn is the output followed by ``<|im_end|>``; the loss covers that only.
- Audio is the window the dataset clips have (``window_audio``: 30 s, centred or zero-padded), mono, at
  the feature extractor's rate (16 kHz for Qwen2-Audio's WhisperFeatureExtractor), 128 mel bins x 3000 frames.
- Training (``prepare_audio_lm``): everything frozen, LoRA on the language model (``lora`` of the config),
  ``modules_to_save`` (e.g. ``multi_modal_projector``) trained in full and kept in fp32.
  ``AudioLMTrainer`` is ``MV4AllTrainer`` in stage 2 (checkpoints hold the adapter only) that also
  accepts cached tower outputs (``audio_embeds``) in place of mel features.
- A run is the same folder as an mv4all stage-2 run, with ``processor/`` (tokenizer, feature extractor,
  chat template) in place of ``tokenizer/``; ``load_audio_lm_run`` rebuilds it with ``from_pretrained``.
- The tower cache (``build_tower_cache``): the frozen tower's output per clip, for training without
  running the tower. Its size is printed first: ~750 x 1280 floats per clip (3.7 MiB).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..inputs import MV_INSTRUCTION, Combination, parse_combination, render_inputs
from .backbones import AudioLMBackbone, get_backbone
from .processing import IGNORE_INDEX, AudioWindow, window_audio

PROCESSOR_DIR = "processor"
TOWER_CACHE_KIND = "audio_tower"


def _spec(backbone: AudioLMBackbone | str) -> AudioLMBackbone:
    spec = get_backbone(backbone) if isinstance(backbone, str) else backbone
    if spec.kind != "audio_lm":
        raise ValueError(f"backbone {spec.name!r} is not a transformers audio LM")
    return spec


# --------------------------------------------------------------------------- prompts and audio


class AudioLMProcessor:
    """Prompt tokens and audio features of an audio LLM, in ``MV4AllProcessor``'s interface.

    processor: the model's transformers processor (feature extractor + tokenizer + chat template).
    """

    has_audio = True

    def __init__(self, processor, backbone: AudioLMBackbone | str = "qwen2-audio"):
        self.hf_processor = processor
        self.backbone = _spec(backbone)
        self.tokenizer = processor.tokenizer
        self.feature_extractor = processor.feature_extractor
        self.encoder = self.feature_extractor  # what hears: callers test ``encoder is not None``
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.audio_token_id in (None, self.tokenizer.unk_token_id):
            raise ValueError(f"the tokenizer has no {self.backbone.audio_token} token")

    # ------------------------------------------------------------------ text

    @property
    def audio_token_id(self) -> int | None:
        return self.tokenizer.convert_tokens_to_ids(self.backbone.audio_token)

    @property
    def frames(self) -> int:
        """Mel frames of one window (the feature extractor pads or cuts to this)."""
        return int(self.feature_extractor.nb_max_frames)

    @property
    def audio_tokens(self) -> int:
        """Placeholders (= tower output frames) per audio: 750 for Qwen2-Audio's 3000 mel frames."""
        return int(self.backbone.audio_tokens_for_frames(self.frames))

    @property
    def end_token_ids(self) -> list[int]:
        """Tokens that end an answer: the chat template's turn end and the tokenizer's eos."""
        ids = [self.tokenizer.convert_tokens_to_ids(t) for t in self.backbone.end_tokens]
        ids.append(self.tokenizer.eos_token_id)
        unk = self.tokenizer.unk_token_id
        return list(dict.fromkeys(i for i in ids if i is not None and (unk is None or i != unk)))

    stop_strings: tuple[str, ...] = ()

    @property
    def turn_end(self) -> str:
        return self.backbone.end_tokens[0] if self.backbone.end_tokens else self.tokenizer.eos_token

    @staticmethod
    def uses_audio(combination: str | Combination) -> bool:
        return parse_combination(combination).uses_audio

    def messages(self, row: Any, combination: str | Combination, instruction: str) -> list[dict]:
        """The user turn: the model's audio entry for ①, then ② ③ ④ as ``render_inputs`` writes them, then the
        instruction (the chat template adds its default system turn)."""
        combo = parse_combination(combination)
        text = render_inputs(row, Combination(combo.modalities - {1})) + instruction
        # "audio" as a key: the Qwen2-Audio-Instruct template tests for the key, transformers' default for the type
        content = ([{"type": "audio", "audio": "music"}] if combo.uses_audio else []) + \
            [{"type": "text", "text": text}]
        return [{"role": "user", "content": content}]

    def prompt_text(self, row: Any, combination: str | Combination, instruction: str | None = None) -> str:
        instruction = instruction or _get(row, "instruction") or MV_INSTRUCTION
        return self.hf_processor.apply_chat_template(self.messages(row, combination, instruction),
                                                     add_generation_prompt=True, tokenize=False)

    def prompt_ids(self, row: Any, combination: str | Combination, instruction: str | None = None,
                   output: str | None = None) -> tuple[list[int], list[int]]:
        """``(input_ids, labels)``: the chat prompt (audio placeholder expanded), then ``output<|im_end|>``.

        Prompt and answer are tokenised separately (the label boundary is exact, and the inference prompt
        is the training prefix token for token); labels are -100 on the prompt.
        """
        prefix = self._tokens(self.prompt_text(row, combination, instruction))
        audio_id = self.audio_token_id
        if prefix.count(audio_id) != (1 if parse_combination(combination).uses_audio else 0):
            raise ValueError(f"the chat template gave {prefix.count(audio_id)} {self.backbone.audio_token} "
                             "placeholders for one audio")
        expanded: list[int] = []
        for token in prefix:
            expanded.extend([token] * self.audio_tokens if token == audio_id else [token])
        target = self._tokens(f"{output.strip()}{self.turn_end}") if output is not None else []
        return expanded + target, [IGNORE_INDEX] * len(expanded) + target

    def _tokens(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # ------------------------------------------------------------------ audio

    @property
    def sample_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    @property
    def window_seconds(self) -> float:
        return self.frames * int(self.feature_extractor.hop_length) / self.sample_rate

    def audio_features(self, path: str | os.PathLike, start: float | None = None) -> tuple[torch.Tensor, AudioWindow]:
        """``(mel features [n_mels, frames], AudioWindow)`` for one file: the 30 s window, mono, 16 kHz."""
        audio, window = window_audio(path, self.sample_rate, start=start, seconds=self.window_seconds)
        return self.waveform_features(audio), window

    def waveform_features(self, waveform) -> torch.Tensor:
        x = np.asarray(waveform, dtype=np.float32)
        if x.ndim == 2:
            x = x.mean(axis=0)
        out = self.feature_extractor(x, sampling_rate=self.sample_rate, return_tensors="pt", padding="max_length",
                                     return_attention_mask=True)
        return out["input_features"][0]

    def row_features(self, row: Mapping[str, Any], audio_root: str | os.PathLike) -> torch.Tensor:
        return self.audio_features(Path(audio_root) / _get(row, "audio"))[0]

    def batch_audio(self, kind: str, values: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Batch tensors of one kind: mel features with their (full-window) ``feature_attention_mask``, or
        cached tower outputs ``audio_embeds`` [B, frames, D]."""
        stacked = torch.stack(values)
        if kind == "input_features":
            return {"input_features": stacked,
                    "feature_attention_mask": torch.ones(stacked.shape[0], stacked.shape[-1], dtype=torch.long)}
        return {kind: stacked}


def _get(row: Any, name: str) -> Any:
    if isinstance(row, Mapping):
        return row.get(name)
    return getattr(row, name, None)


# --------------------------------------------------------------------------- model


def load_audio_lm_processor(name_or_path: str | os.PathLike, revision: str | None = None):
    from transformers import AutoProcessor

    kwargs = {"revision": revision} if revision else {}
    return AutoProcessor.from_pretrained(str(name_or_path), **kwargs)


def load_audio_lm(backbone: AudioLMBackbone | str, name_or_path: str | os.PathLike, *, revision: str | None = None,
                  dtype: torch.dtype = torch.float32):
    """``from_pretrained`` of the backbone's class, frozen, in eval mode. ``dtype`` always explicit (never "auto")."""
    spec = _spec(backbone)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if revision:
        kwargs["revision"] = revision
    model = spec.model_cls().from_pretrained(str(name_or_path), **kwargs)
    model.requires_grad_(False)
    return model.eval()


def prepare_audio_lm(model, backbone: AudioLMBackbone | str, lora: Mapping[str, Any] | None = None):
    """LoRA on the language model (``r``, ``alpha``, ``dropout``, ``target_modules``); ``modules_to_save``
    (e.g. ``[multi_modal_projector]``) train in full. Everything else, the audio tower always, stays frozen.
    Trainable tensors are fp32 beside half-precision frozen weights."""
    from peft import LoraConfig, get_peft_model

    spec = _spec(backbone)
    lora = dict(lora or {})
    model.requires_grad_(False)
    config = LoraConfig(r=int(lora.get("r", 32)), lora_alpha=int(lora.get("alpha", 32)),
                        lora_dropout=float(lora.get("dropout", 0.1)),
                        target_modules=lora.get("target_modules") or spec.lora_target_modules,
                        modules_to_save=list(lora.get("modules_to_save") or []) or None, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    tower_prefix = spec.audio_tower.split(".")[-1] + "."
    for name, param in peft_model.named_parameters():
        if param.requires_grad:
            if tower_prefix in name:
                raise ValueError(f"the LoRA config trains {name} inside the frozen audio tower: narrow target_modules")
            if param.dtype != torch.float32:
                param.data = param.data.float()
    return peft_model


def tower_sha256(module: torch.nn.Module) -> str | None:
    """sha256 of a module's weights upcast to float32 (names, shapes, values): the same for a checkpoint loaded in
    bf16 or fp32, so a run trained in one precision verifies when loaded in the other."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if tensor.is_meta:
            return None
        t = tensor.detach()
        t = (t.float() if t.is_floating_point() else t).cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tuple(tensor.shape)}\n".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def cached_audio_inputs(model, backbone: AudioLMBackbone | str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Replace ``input_ids`` + cached tower outputs ``audio_embeds`` [B, frames, D] by ``inputs_embeds``: the
    model's own projector applied to the cache, written at the audio placeholders (what its forward does)."""
    spec = _spec(backbone)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inputs = dict(inputs)
    ids, audio = inputs.pop("input_ids"), inputs.pop("audio_embeds")
    embeds = base.get_input_embeddings()(ids)
    projector = spec.module(base, spec.projector)
    weight = next(projector.parameters())
    features = projector(audio.to(weight.device, weight.dtype))
    mask = ids == base.config.audio_token_id
    if int(mask.sum()) != features.shape[0] * features.shape[1]:
        raise ValueError(f"{int(mask.sum())} audio placeholders but {features.shape[0]} x {features.shape[1]} cached "
                         "tower frames")
    inputs["inputs_embeds"] = embeds.masked_scatter(mask.unsqueeze(-1), features.to(embeds.dtype))
    return inputs


@functools.cache
def _trainer_class():
    from .trainer import MV4AllTrainer

    class AudioLMTrainer(MV4AllTrainer):
        """``MV4AllTrainer`` in stage 2 (checkpoints: the adapter), also fed from the tower cache."""

        def __init__(self, *args, backbone: AudioLMBackbone | str, **kwargs):
            self.backbone = _spec(backbone)
            super().__init__(*args, stage=2, **kwargs)

        def compute_loss(self, model, inputs, *args, **kwargs):
            if "audio_embeds" in inputs:
                inputs = cached_audio_inputs(self.accelerator.unwrap_model(model), self.backbone, inputs)
            return super().compute_loss(model, inputs, *args, **kwargs)

    return AudioLMTrainer


def __getattr__(name: str):
    if name == "AudioLMTrainer":  # defined lazily: importing trl is slow and needs the train extra
        return _trainer_class()
    raise AttributeError(name)


# --------------------------------------------------------------------------- runs


def load_audio_lm_run(run_dir: Path, info: dict[str, Any], *, language_model: str | None = None,
                      revision: str | None = None, dtype: torch.dtype = torch.float32,
                      device: str | torch.device | None = None, check_encoder: bool = True,
                      check_base_model: bool = True):
    """``load_run`` for an audio-LM run: ``(PeftModel in eval mode, the saved processor, run_info)``."""
    from .run import STAGE2_DIR, load_adapter, ready_for_inference
    from .weights import MissingBaseWeights, locate_base_model, model_files_sha256

    spec = _spec(info.get("backbone"))
    base = info["base_model"]
    lm_path = locate_base_model(info, run_dir, language_model).value
    rev = revision if language_model else base.get("revision")
    for folder in (STAGE2_DIR, PROCESSOR_DIR):
        if not (run_dir / folder).is_dir():
            raise MissingBaseWeights(f"{run_dir} has no {folder}/: the run is incomplete or was copied partly")
    processor = load_audio_lm_processor(run_dir / PROCESSOR_DIR)
    if check_base_model and base.get("sha256"):
        found = model_files_sha256(lm_path, rev)
        if found is not None and found != base["sha256"]:
            raise ValueError(
                f"the base model at {lm_path} (weights sha256 {found[:12]}) is not the one this run was trained "
                f"with ({base['id']}, {base['sha256'][:12]}): pass the right --base-model, or check_base_model=False")
    model = load_audio_lm(spec, lm_path, revision=rev, dtype=dtype)
    recorded = (info.get("audio_encoder") or {}).get("sha256")
    if check_encoder and recorded:
        found = tower_sha256(spec.tower(model))
        if found != recorded:
            raise ValueError(f"the audio tower of {lm_path} (sha256 {found[:12]}) is not the one this run was trained "
                             f"with ({recorded[:12]}): pass the right --base-model, or check_encoder=False")
    return ready_for_inference(load_adapter(model, run_dir / STAGE2_DIR), device), processor, info


def audio_lm_record(model, backbone: AudioLMBackbone | str, processor, supplied_tower: str | None,
                    where: Callable[[Any], dict], checkpoint: str | None, path: str | None) -> dict[str, Any]:
    """The model part of ``run.json`` for an audio-LM run (``audio_encoder``, ``tokens_per_audio``, ``model``).

    The tower is part of the base checkpoint: ``checkpoint`` as configured, ``path`` as recorded (portable).
    """
    spec = _spec(backbone)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    prompts = AudioLMProcessor(processor, spec)
    trained = sorted({name.split(".modules_to_save")[0].split(".")[-1] for name, p in model.named_parameters()
                      if p.requires_grad and ".modules_to_save." in name})
    return {
        "audio_encoder": {"name": f"{spec.name}:{spec.audio_tower.split('.')[-1]}", "path": path, **where(checkpoint),
                          "sha256": supplied_tower, "hash": "float32 state dict (mv4all.model.audio_lm.tower_sha256)"},
        "tokens_per_audio": prompts.audio_tokens,
        "model": {"class": type(base).__name__, "tokens_per_audio": prompts.audio_tokens,
                  "audio_token_id": base.config.audio_token_id, "mel_frames": prompts.frames,
                  "sample_rate": prompts.sample_rate, "window_seconds": prompts.window_seconds,
                  "hidden_size": base.config.get_text_config().hidden_size, "trained_in_full": trained},
    }


# --------------------------------------------------------------------------- the tower cache


def tower_cache_size(config, backbone: AudioLMBackbone | str = "qwen2-audio", num_clips: int = 1,
                     frames: int = 3000) -> dict[str, int]:
    """Bytes of the tower cache: ``audio tokens x d_model`` float32 per clip (750 x 1280 x 4 = 3.7 MiB for
    Qwen2-Audio), times ``num_clips``."""
    spec = _spec(backbone)
    audio_config = config.audio_config if hasattr(config, "audio_config") else config["audio_config"]
    d_model = int(audio_config.d_model if hasattr(audio_config, "d_model") else audio_config["d_model"])
    tokens = int(spec.audio_tokens_for_frames(frames))
    per_clip = tokens * d_model * 4
    return {"frames": tokens, "dim": d_model, "bytes_per_clip": per_clip, "num_clips": int(num_clips),
            "bytes": per_clip * int(num_clips)}


def describe_size(size: dict[str, int]) -> str:
    def human(n: float) -> str:
        for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
            if n < 1024 or unit == "TiB":
                return f"{n:.1f} {unit}"
            n /= 1024
        return f"{n:.1f} TiB"

    return (f"audio tower cache: {size['frames']} frames x {size['dim']} dims x 4 bytes = "
            f"{human(size['bytes_per_clip'])} per clip; {size['num_clips']} clips -> {human(size['bytes'])}")


@torch.no_grad()
def build_tower_cache(
    model: str | os.PathLike,
    dataset: str | os.PathLike,
    audio_root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    backbone: str = "qwen2-audio",
    precision: str = "bf16",
    revision: str | None = None,
    batch_size: int = 4,
    device: str | None = None,
    dry_run: bool = False,
    log: Callable[[str], None] = print,
    progress: Callable[[int], None] | None = None,
) -> Path | dict[str, int]:
    """Run the frozen tower of ``model`` once over every clip of ``dataset`` and write the cache folder.

    The size is printed first (``log``); with ``dry_run`` nothing loads and the size is returned. The tower runs
    in ``precision`` (the training precision: the cache then equals what training would compute) and its outputs
    are stored as float32 (exact). Training reads it with ``embeddings: OUT``; ``check_tower_cache`` refuses a
    cache from another tower or precision.
    """
    from transformers import AutoConfig

    from .embedding_cache import _build_id, dataset_audio, save_embedding_cache
    from .run import precision_dtype

    spec = _spec(backbone)
    items = dataset_audio(dataset)
    processor = AudioLMProcessor(load_audio_lm_processor(model, revision), spec)
    size = tower_cache_size(AutoConfig.from_pretrained(str(model), revision=revision), spec, len(items),
                            processor.frames)
    log(describe_size(size))
    if dry_run:
        return size
    full = load_audio_lm(spec, model, revision=revision, dtype=precision_dtype(precision))
    tower = spec.tower(full)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tower.to(device).eval()
    ids = list(items)
    embeddings: dict[str, torch.Tensor] = {}
    for i in range(0, len(ids), batch_size):
        chunk = ids[i : i + batch_size]
        features = torch.stack([processor.row_features({"audio": items[k]}, audio_root) for k in chunk])
        hidden = tower(features.to(device, next(tower.parameters()).dtype)).last_hidden_state.float().cpu()
        embeddings.update({k: hidden[j].contiguous() for j, k in enumerate(chunk)})
        if progress is not None:
            progress(len(chunk))
    meta = {"kind": TOWER_CACHE_KIND, "backbone": spec.name, "precision": str(precision).lower(),
            "encoder": {"name": f"{spec.name}:{spec.audio_tower.split('.')[-1]}",
                        "path": Path(str(model)).name if Path(str(model)).exists() else str(model),
                        "sha256": tower_sha256(tower)},
            "clip_sampler": None, "dataset": _build_id(dataset)}
    return save_embedding_cache(out, embeddings, meta)


def check_tower_cache(cache, backbone: AudioLMBackbone | str, model, precision: str) -> None:
    """Refuse a cache that this model's tower, in this precision, would not reproduce."""
    spec = _spec(backbone)
    index = cache.index
    problems = []
    if index.get("kind") != TOWER_CACHE_KIND:
        problems.append(f"it holds {index.get('kind') or 'mv4all encoder'} embeddings, not {spec.name} tower outputs")
    if index.get("precision") != str(precision).lower():
        problems.append(f"made in {index.get('precision')}, training runs in {precision}")
    found = tower_sha256(spec.tower(model))
    if cache.encoder_sha256 != found:
        problems.append(f"tower sha256 {str(cache.encoder_sha256)[:12]} != the model's {str(found)[:12]}")
    if problems:
        raise ValueError(f"embedding cache {cache.folder} does not match the model: " + "; ".join(problems))


def main(argv=None) -> None:
    """``python -m mv4all.model.audio_lm --model Qwen/Qwen2-Audio-7B-Instruct --dataset D --audio-root M -o OUT``."""
    import argparse

    parser = argparse.ArgumentParser(description="Cache an audio LLM's frozen tower outputs (size printed first).")
    parser.add_argument("--model", required=True, help="checkpoint folder or Hub id")
    parser.add_argument("--backbone", default="qwen2-audio")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--audio-root", required=True)
    parser.add_argument("--out", "-o", required=True)
    parser.add_argument("--precision", default="bf16", help="the training precision")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device")
    parser.add_argument("--dry-run", action="store_true", help="print the size only")
    args = parser.parse_args(argv)
    if not args.dry_run:
        from ..safety import claim_folder

        claim_folder(args.out, "embeddings", legacy=("index.json",))
    result = build_tower_cache(args.model, args.dataset, args.audio_root, args.out, backbone=args.backbone,
                               precision=args.precision, batch_size=args.batch_size, device=args.device,
                               dry_run=args.dry_run)
    if not args.dry_run:
        print(f"wrote {result}")


if __name__ == "__main__":
    main()
