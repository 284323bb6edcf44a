"""How much accelerator memory a training run needs, said before any weight is loaded.

A 7B run that does not fit fails minutes into loading with a CUDA out-of-memory traceback, or
worse, after the first long batch. The estimate is computed from configs alone (the models are
built on the meta device): weights in their dtype, trainable parameters with fp32 master copy,
gradient and Adam state, and activations of a LLaMA-style decoder layer at the configured
sequence length and batch size. It is an estimate of the peak, deliberately on the high side;
framework overheads (CUDA context, allocator fragmentation) come on top.

Activation bytes per token per decoder layer (16-bit activations), counting what autograd keeps:
the two RMSNorm inputs/outputs plus their fp32 upcasts, q/k/v and their rotary copies, the
attention output and its projection input (11 hidden-sized tensors), the four MLP tensors of the
intermediate size (gate, up, activation, product), and with LoRA one dropout copy of the input of
each adapted projection. With gradient checkpointing only each layer's input is kept, plus one
layer's activations during its recomputation. Logits are kept in the model dtype and upcast to
fp32 for the loss, with a gradient of the same size.

A transformers audio LLM (``estimate_audio_lm``, e.g. Qwen2-Audio) is estimated from its HF config
alone (or, offline, from the published config its backbone records): LLM, audio tower and projector in
the precision's dtype, LoRA (and any ``modules_to_save``) trainable in fp32 with AdamW, the same
decoder activations over the whole sequence, whose ~750 audio frames per clip count as tokens, plus the
frozen tower's transient forward (no gradients are kept for it).
"""

from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass

import torch

__all__ = ["MemoryEstimate", "audio_lm_config", "check_fits", "estimate_audio_lm", "estimate_mv4all",
           "estimate_training_memory", "visible_device_memory"]

GB = 1024**3
HEADROOM = 0.92  # CUDA context, allocator fragmentation and workspaces take the rest


@dataclass
class MemoryEstimate:
    """Bytes per device for one training process."""

    weights: int
    trainable_params: int
    trainable_state: int  # fp32 master weights + gradients + Adam moments
    activations: int
    logits: int
    total_params: int
    sequence_length: int
    batch_size: int
    gradient_checkpointing: bool

    @property
    def total(self) -> int:
        return self.weights + self.trainable_state + self.activations + self.logits

    def fits(self, available: int) -> bool:
        """Whether the estimate fits ``available`` bytes with headroom for what it does not count."""
        return self.total <= HEADROOM * available

    def summary(self) -> str:
        parts = [f"weights {_size(self.weights)}", f"trainable {self.trainable_params / 1e6:.1f} M params "
                 f"+ optimizer {_size(self.trainable_state)}", f"activations {_size(self.activations)}",
                 f"logits {_size(self.logits)}"]
        return (f"memory estimate per device: {_size(self.total)} ({', '.join(parts)}; batch "
                f"{self.batch_size} x {self.sequence_length} tokens, gradient checkpointing "
                f"{'on' if self.gradient_checkpointing else 'off'})")

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def _size(n: int) -> str:
    return f"{n / GB:.1f} GiB" if n >= GB / 10 else f"{n / 2**20:.1f} MiB"


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _lora_params(lm: torch.nn.Module, r: int, pattern: str) -> tuple[int, int]:
    """(LoRA parameters, summed input width of the adapted layers) for the target regex."""
    regex = re.compile(pattern)
    params = widths = 0
    for name, module in lm.named_modules():
        if isinstance(module, torch.nn.Linear) and regex.fullmatch(f"model.language_model.{name}"):
            params += r * (module.in_features + module.out_features)
            widths += module.in_features
    return params, widths


def estimate_training_memory(
    text_config,
    *,
    encoder_params: int,
    projector_params: int,
    weight_dtype: torch.dtype,
    sequence_length: int,
    batch_size: int,
    gradient_checkpointing: bool = False,
    lora_r: int | None = None,
    lora_pattern: str | None = None,
) -> MemoryEstimate:
    """Peak memory of one training process for a causal LM described by ``text_config``.

    The encoder is counted in fp32 (it is kept as supplied); the projector (and LoRA) trains in
    fp32 with AdamW.
    """
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(text_config)
    lm_params = _count(lm)
    width = torch.finfo(weight_dtype).bits // 8
    trainable = projector_params
    lora_widths = 0
    if lora_r:
        lora, lora_widths = _lora_params(lm.base_model, lora_r, lora_pattern or r".*(q_proj|k_proj|v_proj|o_proj)")
        trainable += lora
    tokens = batch_size * sequence_length
    activations, logits = _decoder_activations(text_config, width, tokens, gradient_checkpointing, lora_widths)
    return MemoryEstimate(
        weights=lm_params * width + encoder_params * 4 + projector_params * 4,
        trainable_params=trainable,
        trainable_state=trainable * 16 if trainable else 0,
        activations=int(activations),
        logits=int(logits),
        total_params=lm_params + encoder_params + projector_params,
        sequence_length=sequence_length,
        batch_size=batch_size,
        gradient_checkpointing=gradient_checkpointing,
    )


def _decoder_activations(text_config, width: int, tokens: int, gradient_checkpointing: bool,
                         lora_widths: int) -> tuple[int, int]:
    """(activations, logits) bytes of a LLaMA-style decoder over ``tokens`` tokens (see the module docstring)."""
    hidden = int(text_config.hidden_size)
    inter = int(getattr(text_config, "intermediate_size", 4 * hidden))
    layers = int(text_config.num_hidden_layers)
    vocab = int(text_config.vocab_size)
    per_layer_token = width * (11 * hidden + 4 * inter) + 2 * 4 * hidden + width * lora_widths // max(1, layers)
    if gradient_checkpointing:
        activations = tokens * (layers * width * hidden + per_layer_token)
    else:
        activations = tokens * layers * per_layer_token
    return int(activations), int(tokens * vocab * (width + 4 + 4))


def audio_lm_config(backbone, name_or_path: str, revision: str | None = None):
    """The HF config of an audio LLM checkpoint; offline, the published config of the backbone's reference
    checkpoint (``Qwen/Qwen2-Audio-7B-Instruct``) when that is the one named."""
    from transformers import AutoConfig

    from .backbones import get_backbone

    spec = get_backbone(backbone) if isinstance(backbone, str) else backbone
    try:
        return AutoConfig.from_pretrained(str(name_or_path), revision=revision)
    except (OSError, ValueError):
        if str(name_or_path) != spec.reference_id or not spec.reference:
            raise
    config = AutoConfig.for_model(**copy.deepcopy(dict(spec.reference)))
    print(f"note: {name_or_path} is not available here; its config is the one recorded for {spec.name} "
          "(mv4all.model.backbones)", flush=True)
    return config


def estimate_audio_lm(config, *, backbone="qwen2-audio", weight_dtype: torch.dtype, sequence_length: int,
                      batch_size: int, gradient_checkpointing: bool = False, lora_r: int | None = 32,
                      lora_pattern: str | None = None, modules_to_save=()) -> MemoryEstimate:
    """Peak memory of LoRA training of an audio LLM (config only; the model is built on the meta device).

    ``sequence_length`` counts every position the decoder sees: the prompt with its audio frames (750 per 30 s
    clip for Qwen2-Audio) and the target.
    """
    from .backbones import get_backbone

    spec = get_backbone(backbone) if isinstance(backbone, str) else backbone
    with torch.device("meta"):
        model = spec.model_cls()(config)
    width = torch.finfo(weight_dtype).bits // 8
    total = _count(model)
    language_model = spec.module(model, spec.language_model)
    lora = lora_widths = 0
    if lora_r:
        lora, lora_widths = _lora_params(language_model, lora_r, lora_pattern or spec.lora_target_modules)
    full = sum(_count(m) for name, m in model.named_modules() if name and name.split(".")[-1] in set(modules_to_save))
    trainable = lora + full
    text_config = config.get_text_config()
    tokens = batch_size * sequence_length
    activations, logits = _decoder_activations(text_config, width, tokens, gradient_checkpointing, lora_widths)
    audio = config.audio_config  # the frozen tower's forward: conv input/output and one layer at a time
    frames = int(audio.max_source_positions) * 2
    positions = int(audio.max_source_positions)
    tower = batch_size * width * (frames * (int(audio.num_mel_bins) + int(audio.d_model))
                                  + positions * (6 * int(audio.d_model) + int(audio.encoder_ffn_dim)))
    return MemoryEstimate(
        weights=total * width + full * (4 - width),  # trained modules are kept in fp32
        trainable_params=trainable,
        trainable_state=trainable * 16 if trainable else 0,
        activations=int(activations + tower),
        logits=int(logits),
        total_params=total,
        sequence_length=sequence_length,
        batch_size=batch_size,
        gradient_checkpointing=gradient_checkpointing,
    )


def visible_device_memory() -> tuple[str, int]:
    """(description, bytes) of the smallest visible accelerator, or of system RAM on a CPU-only machine."""
    if torch.cuda.is_available():
        sizes = [(torch.cuda.get_device_name(i), torch.cuda.get_device_properties(i).total_memory)
                 for i in range(torch.cuda.device_count())]
        name, size = min(sizes, key=lambda item: item[1])
        return f"{len(sizes)} x {name}" if len(sizes) > 1 else name, size
    import os

    return "CPU RAM", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def estimate_mv4all(language_model: str, *, revision: str | None = None, audio_encoder: str = "imagebind",
                    tokens_per_audio: int | str = 1, projector_type: str = "linear", weight_dtype: torch.dtype,
                    sequence_length: int, batch_size: int, gradient_checkpointing: bool = False,
                    lora_r: int | None = None, lora_pattern: str | None = None) -> MemoryEstimate:
    """``estimate_training_memory`` for an mv4all model: the LLM's config only, encoder and projector on meta."""
    from transformers import AutoConfig

    from . import LORA_TARGET_MODULES
    from .configuration import MV4AllConfig
    from .encoders import build_audio_encoder
    from .projector import AudioProjector

    text_config = AutoConfig.from_pretrained(language_model, revision=revision)
    config = MV4AllConfig(text_config=text_config, audio_encoder=audio_encoder, tokens_per_audio=tokens_per_audio,
                          projector_type=projector_type)
    with torch.device("meta"):
        encoder = build_audio_encoder(audio_encoder, config.audio_config)
        projector = AudioProjector(config, encoder.output_dim)
    return estimate_training_memory(
        text_config, encoder_params=_count(encoder), projector_params=_count(projector), weight_dtype=weight_dtype,
        sequence_length=sequence_length, batch_size=batch_size, gradient_checkpointing=gradient_checkpointing,
        lora_r=lora_r, lora_pattern=lora_pattern or LORA_TARGET_MODULES)


def check_fits(estimate: MemoryEstimate, refuse: bool = True) -> None:
    """Print the estimate against the visible device; raise ``MemoryError`` (before loading) if it cannot fit."""
    where, available = visible_device_memory()
    print(f"{estimate.summary()}; {where}: {available / GB:.1f} GiB", flush=True)
    if refuse and not estimate.fits(available):
        raise MemoryError(
            f"this stage needs about {estimate.total / GB:.1f} GiB per device but {where} has "
            f"{available / GB:.1f} GiB: turn on activation_checkpointing, lower max_length or "
            "per_device_train_batch_size, or set memory_check: false to try anyway")


def estimate_for_config(cfg: dict, target_tokens: dict[str, int], refuse: bool | None = None) -> MemoryEstimate:
    """A training stage's peak memory from its resolved config (no weights loaded), printed and checked.

    The sequence length is the longest example the collator will build (``target_tokens`` from
    ``MV4AllCollator.length_stats``), capped by ``max_length``.
    """
    from .backbones import get_backbone
    from .run import precision_dtype

    length = int(target_tokens.get("example_max") or cfg.get("max_length") or 2048)
    lora = cfg.get("lora") or {}
    spec = get_backbone(cfg.get("backbone"))
    if spec.kind == "audio_lm":
        estimate = estimate_audio_lm(
            audio_lm_config(spec, cfg["language_model"], cfg.get("language_model_revision")), backbone=spec,
            weight_dtype=precision_dtype(cfg.get("precision")),
            sequence_length=min(length, int(cfg.get("max_length") or length)),
            batch_size=int(cfg.get("per_device_train_batch_size", 8)),
            gradient_checkpointing=bool(cfg.get("activation_checkpointing")), lora_r=int(lora.get("r", 32)),
            lora_pattern=lora.get("target_modules"), modules_to_save=lora.get("modules_to_save") or ())
        check_fits(estimate, refuse=cfg.get("memory_check", True) if refuse is None else refuse)
        return estimate
    estimate = estimate_mv4all(
        cfg["language_model"], revision=cfg.get("language_model_revision"), audio_encoder=cfg["audio_encoder"],
        tokens_per_audio=cfg.get("tokens_per_audio", 1), projector_type=cfg.get("projector_type", "linear"),
        weight_dtype=precision_dtype(cfg.get("precision")),
        sequence_length=min(length, int(cfg.get("max_length") or length)),
        batch_size=int(cfg.get("per_device_train_batch_size", 8)),
        gradient_checkpointing=bool(cfg.get("activation_checkpointing")),
        lora_r=int(lora.get("r", 32)) if cfg["stage"] == 2 else None, lora_pattern=lora.get("target_modules"))
    check_fits(estimate, refuse=cfg.get("memory_check", True) if refuse is None else refuse)
    return estimate
