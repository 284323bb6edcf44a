"""Configurations: the composite model config and our ImageBind audio-branch config.

The composite config follows transformers' multimodal convention (Llava, Qwen2-Audio):
``text_config`` and ``audio_config`` are sub-configs, so ``save_pretrained`` writes one
``config.json`` that rebuilds the whole model, and TRL finds the language model's settings
through ``config.get_text_config()``.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from ..schema import CLIP_SECONDS

IMAGEBIND_AUDIO_MODEL_TYPE = "mv4all_imagebind_audio"

# Extra settings of each registry encoder's default config. "tiny" is the ImageBind
# architecture at toy width (same 128x204 input and 12x19 patch grid), for tests.
ENCODER_DEFAULT_CONFIGS: dict[str, dict] = {
    "imagebind": {"model_type": IMAGEBIND_AUDIO_MODEL_TYPE},
    "tiny": {
        "model_type": IMAGEBIND_AUDIO_MODEL_TYPE,
        "embed_dim": 32,
        "num_blocks": 2,
        "num_heads": 2,
        "out_embed_dim": 24,
    },
    "ast": {"model_type": "audio-spectrogram-transformer"},
    "clap": {"model_type": "clap_audio_model"},
    "whisper": {"model_type": "whisper"},
}


@strict
class ImageBindAudioConfig(PreTrainedConfig):
    r"""ImageBind-huge's audio branch (defaults = the released checkpoint).

    apply_logit_scale (`bool`, defaults to `False`):
        Multiply the L2-normalised embedding by exp(``log_logit_scale``) = 20 as upstream
        ImageBind does. NExT-GPT and DeepResonance (the paper's code base) only normalise, so
        the default is off; the buffer is kept either way so checkpoints load strictly.
    drop_path (`float`):
        Recorded for completeness; inactive because the encoder always runs in eval mode.
    """

    model_type = IMAGEBIND_AUDIO_MODEL_TYPE
    attribute_map = {"hidden_size": "embed_dim", "num_hidden_layers": "num_blocks"}

    embed_dim: int = 768
    num_blocks: int = 12
    num_heads: int = 12
    mlp_ratio: int = 4
    kernel_size: int = 16
    stride: int = 10
    num_mel_bins: int = 128
    target_length: int = 204
    out_embed_dim: int = 1024
    drop_path: float = 0.1
    logit_scale_init: float = 20.0
    apply_logit_scale: bool = False
    initializer_range: float = 0.02

    @property
    def patch_grid(self) -> tuple[int, int]:
        return (
            (self.num_mel_bins - self.kernel_size) // self.stride + 1,
            (self.target_length - self.kernel_size) // self.stride + 1,
        )

    @property
    def num_positions(self) -> int:
        rows, cols = self.patch_grid
        return rows * cols + 1  # + CLS


@strict
class MV4AllConfig(PreTrainedConfig):
    r"""Audio encoder + projector + causal LM.

    text_config (`dict | PreTrainedConfig`):
        Any causal LM config (Vicuna-7B is a ``LlamaConfig``).
    audio_encoder (`str`, defaults to `"imagebind"`):
        Registry key of the encoder (``mv4all.model.encoders.AUDIO_ENCODERS``): ``imagebind``,
        ``tiny``, ``ast``, ``clap``, ``whisper``.
    audio_config (`dict | PreTrainedConfig`, *optional*):
        The encoder's own config; defaults to the registry entry's default.
    audio_encoder_path (`str`, *optional*):
        Where the encoder weights came from (``imagebind_huge.pth`` or a hub id); provenance only,
        the weights themselves are part of the saved model.
    tokens_per_audio (`int | str`, defaults to 1):
        1: one token, the mean of the clip embeddings (paper). k > 1: one token per clip with k
        clips (DeepResonance uses 3). ``"N"``: one token per clip, with enough clips to tile
        ``audio_seconds`` (15 two-second clips for 30 s).
    clips_per_audio (`int`, *optional*):
        Clips cut from each audio; derived from ``tokens_per_audio`` when not given (3 for mode 1).
    clip_sampler (`str`, defaults to `"imagebind"`):
        ``"imagebind"`` (0/14/28 s for 30 s, the sampler ImageBind pins) or ``"pytorchvideo-0.1.5"``
        (0/9.33/18.67 s, what NExT-GPT/DeepResonance installs).
    projector_type (`str`, defaults to `"linear"`):
        ``"linear"`` (paper: one Linear D->hidden with bias) or ``"mlp"`` (Linear-GELU-Linear).
    audio_token_id (`int`, *optional*):
        Id of the ``<audio>`` placeholder; set when the tokenizer gets the token.
    """

    model_type = "mv4all"
    attribute_map = {"audio_token_index": "audio_token_id"}
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
        "audio_config": SubConfigSpec(config_class=AutoConfig, model_type=IMAGEBIND_AUDIO_MODEL_TYPE),
    }

    text_config: dict | PreTrainedConfig | None = None
    audio_config: dict | PreTrainedConfig | None = None
    audio_encoder: str = "imagebind"
    audio_encoder_path: str | None = None
    tokens_per_audio: int | str = 1
    clips_per_audio: int | None = None
    clip_sampler: str = "imagebind"
    audio_seconds: float = CLIP_SECONDS
    projector_type: str = "linear"
    projector_bias: bool = True
    projector_hidden_act: str = "gelu"
    audio_token_id: int | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        if self.audio_config is None:
            if self.audio_encoder not in ENCODER_DEFAULT_CONFIGS:
                raise ValueError(
                    f"unknown audio encoder {self.audio_encoder!r}: pass audio_config or use one of "
                    f"{sorted(ENCODER_DEFAULT_CONFIGS)}"
                )
            self.audio_config = dict(ENCODER_DEFAULT_CONFIGS[self.audio_encoder])
        self.tokens_per_audio = _check_tokens_per_audio(self.tokens_per_audio)
        if self.clips_per_audio is None:
            self.clips_per_audio = self._default_clips()
        per_clip = self.tokens_per_audio not in (1, "N")
        if per_clip and self.clips_per_audio != self.tokens_per_audio:
            raise ValueError(
                f"tokens_per_audio={self.tokens_per_audio} means one token per clip, "
                f"but clips_per_audio={self.clips_per_audio}"
            )
        if self.clip_sampler not in ("imagebind", "pytorchvideo-0.1.5"):
            raise ValueError(f"unknown clip_sampler {self.clip_sampler!r}")
        if self.projector_type not in ("linear", "mlp"):
            raise ValueError(f"projector_type must be 'linear' or 'mlp', got {self.projector_type!r}")
        super().__post_init__(**kwargs)
        # Like Llava: a text config that ties embeddings wins over our default.
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True

    def _default_clips(self) -> int:
        if self.tokens_per_audio == 1:
            return 3
        if self.tokens_per_audio == "N":
            from ..audio import covering_clip_count

            return int(covering_clip_count(self.audio_seconds, self.clip_seconds))
        return int(self.tokens_per_audio)

    @property
    def clip_seconds(self) -> float:
        """Length of one clip the encoder sees (ImageBind: 2 s)."""
        cfg = self.audio_config
        model_type = cfg.get("model_type") if isinstance(cfg, dict) else getattr(cfg, "model_type", None)
        return {
            IMAGEBIND_AUDIO_MODEL_TYPE: 2.0,
            "audio-spectrogram-transformer": 0.01 * _get(cfg, "max_length", 1024),
            "clap_audio_model": 10.0,
            "whisper": 30.0,
        }.get(model_type, 2.0)

    @property
    def num_audio_tokens(self) -> int:
        """Placeholder tokens (and projected embeddings) per audio in the prompt."""
        return 1 if self.tokens_per_audio == 1 else int(self.clips_per_audio)


def _get(cfg, name, default):
    return cfg.get(name, default) if isinstance(cfg, dict) else getattr(cfg, name, default)


def _check_tokens_per_audio(value):
    if isinstance(value, str):
        text = value.strip()
        if text.upper() == "N":
            return "N"
        if not text.isdigit():
            raise ValueError(f"tokens_per_audio must be a positive int or 'N', got {value!r}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"tokens_per_audio must be a positive int or 'N', got {value!r}")
    return value


AutoConfig.register(IMAGEBIND_AUDIO_MODEL_TYPE, ImageBindAudioConfig, exist_ok=True)
AutoConfig.register("mv4all", MV4AllConfig, exist_ok=True)
