"""Which model a run trains: the paper's mv4all assembly, or a transformers audio LLM, by name.

A training config's ``backbone:`` picks one entry of ``BACKBONES``; ``run.json`` records it, and
``load_run``, ``Describer`` and the leaderboard read it back, so everything downstream follows the run.

- ``mv4all`` (default): our NExT-GPT-shaped model (``MV4AllForConditionalGeneration``): a frozen
  encoder, a projector aligned in stage 1, LoRA in stage 2 (``mv4all.model.run.build_model``).
- ``qwen2-audio``: ``Qwen2AudioForConditionalGeneration`` (a Whisper-large-v3-like audio tower,
  ~750 frames per 30 s, a linear projector, Qwen-7B), already aligned to audio by its authors: it has
  stage 2 only (LoRA on its language model, from the base checkpoint, no ``init_from``).

Another transformers model with an audio tower is one more ``AudioLMBackbone`` entry: the class to
``from_pretrained``, where its tower / projector / language model live, its placeholder token and how many
placeholders one window of audio becomes (``mv4all.model.audio_lm`` does the rest).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

DEFAULT_BACKBONE = "mv4all"


@dataclass(frozen=True)
class Backbone:
    """What the recipe needs to know about a model family before loading anything."""

    name: str
    description: str
    stages: tuple[int, ...]  # the training stages its recipe has (stage 2 needs init_from iff 1 is here)
    kind: str = "mv4all"  # "mv4all" (our assembly) or "audio_lm" (a transformers audio LLM)

    @property
    def needs_stage1(self) -> bool:
        return 1 in self.stages


def _qwen2_audio_tokens(frames: int) -> int:
    """Mel frames -> audio placeholders: conv2 stride 2, then the tower's 2x average pooling (3000 -> 750)."""
    after_conv = (int(frames) - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1


@dataclass(frozen=True)
class AudioLMBackbone(Backbone):
    """A transformers model with an audio tower, loaded with ``from_pretrained`` as its authors publish it.

    The module paths are attribute paths from the ``*ForConditionalGeneration`` object. ``reference`` is the
    published config of the checkpoint named by ``reference_id`` (used offline: memory estimates before any
    download, and ``bench/gpu.py``'s random model of the same shape).
    """

    kind: str = "audio_lm"
    model_class: str = ""  # transformers class name
    audio_tower: str = "model.audio_tower"
    projector: str = "model.multi_modal_projector"
    language_model: str = "model.language_model"
    audio_token: str = "<|AUDIO|>"
    end_tokens: tuple[str, ...] = ()  # tokens that end an answer (besides the tokenizer's eos)
    audio_tokens_for_frames: Callable[[int], int] = _qwen2_audio_tokens
    lora_target_modules: str = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"
    reference_id: str = ""
    reference: Mapping[str, Any] = field(default_factory=dict)
    licence: str = ""

    def module(self, model, path: str):
        """The submodule at ``path`` of a model (a ``PeftModel`` is unwrapped first)."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        for part in path.split("."):
            base = getattr(base, part)
        return base

    def tower(self, model):
        return self.module(model, self.audio_tower)

    def model_cls(self):
        import transformers

        return getattr(transformers, self.model_class)


# Qwen/Qwen2-Audio-7B(-Instruct) config.json (the text config's other fields are Qwen2Config defaults:
# hidden 4096, 32 layers, 32 heads, 32 key/value heads, untied embeddings).
QWEN2_AUDIO_7B = {
    "model_type": "qwen2_audio",
    "audio_token_index": 151646,
    "audio_config": {"model_type": "qwen2_audio_encoder", "num_mel_bins": 128, "encoder_layers": 32,
                     "encoder_attention_heads": 20, "encoder_ffn_dim": 5120, "d_model": 1280,
                     "activation_function": "gelu", "scale_embedding": False, "max_source_positions": 1500},
    "text_config": {"model_type": "qwen2", "bos_token_id": 151643, "eos_token_id": 151645, "hidden_size": 4096,
                    "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
                    "num_key_value_heads": 32, "max_position_embeddings": 8192, "rope_theta": 10000,
                    "rms_norm_eps": 1e-5, "sliding_window": 32768, "vocab_size": 156032,
                    "tie_word_embeddings": False},
}

BACKBONES: dict[str, Backbone] = {}


def register_backbone(spec: Backbone, *, replace: bool = False) -> Backbone:
    if spec.name in BACKBONES and not replace:
        raise ValueError(f"backbone {spec.name!r} is registered already")
    if not spec.stages or any(s not in (1, 2) for s in spec.stages):
        raise ValueError(f"backbone {spec.name!r}: stages must be a non-empty subset of (1, 2)")
    BACKBONES[spec.name] = spec
    return spec


register_backbone(Backbone(
    name="mv4all", stages=(1, 2),
    description="frozen audio encoder (ImageBind by default) -> linear projector -> causal LM (Vicuna-7B); "
                "stage 1 aligns the projector, stage 2 adds LoRA"))
register_backbone(AudioLMBackbone(
    name="qwen2-audio", stages=(2,), model_class="Qwen2AudioForConditionalGeneration",
    description="Qwen2AudioForConditionalGeneration: Whisper-large-v3-like audio tower (~750 frames per 30 s) "
                "-> linear projector -> Qwen-7B, aligned to audio by its authors; LoRA on the language model",
    end_tokens=("<|im_end|>", "<|endoftext|>"),
    reference_id="Qwen/Qwen2-Audio-7B-Instruct", reference=QWEN2_AUDIO_7B, licence="Apache-2.0"))


def get_backbone(name: str | None) -> Backbone:
    """The registered backbone ``name`` (``None``: the default); an unknown name is an error listing the known."""
    key = DEFAULT_BACKBONE if name in (None, "") else str(name)
    if key not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[key]


def backbone_of(record: Mapping[str, Any] | None) -> Backbone:
    """The backbone a run record or resolved config names (runs that predate the field are mv4all)."""
    return get_backbone((record or {}).get("backbone"))


def is_audio_lm(record_or_name: Mapping[str, Any] | str | None) -> bool:
    spec = get_backbone(record_or_name) if not isinstance(record_or_name, Mapping) else backbone_of(record_or_name)
    return spec.kind == "audio_lm"
