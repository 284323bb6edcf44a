"""Audio encoders: our ImageBind audio branch, transformers-native alternatives, and a registry.

Every encoder is a ``PreTrainedModel`` (so ``from_pretrained`` and initialisation behave like
any transformers model) with the same small contract, which is all ``MV4AllModel`` and the
embedding cache rely on:

- ``encode(features) -> [B, n_clips, D]``: one embedding per clip, before any pooling;
- ``output_dim``: D;
- ``sample_rate`` / ``clip_features(waveform)``: how to turn a waveform into ``features``.

Encoders are frozen in both training stages (the paper; and it makes the embedding cache
valid), so they disable gradients on construction and refuse to leave eval mode: dropout or
drop-path during "training" would make cached and live embeddings disagree.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from transformers import (
    ASTFeatureExtractor,
    ASTModel,
    ClapAudioModelWithProjection,
    PreTrainedConfig,
    PreTrainedModel,
    WhisperModel,
)
from transformers import initialization as init
from transformers.models.whisper.modeling_whisper import WhisperEncoder
from transformers.utils import ModelOutput

from .. import audio as audio_lib
from .configuration import ENCODER_DEFAULT_CONFIGS, ImageBindAudioConfig


class FrozenAudioEncoder:
    """Mixin: frozen weights, always eval, and the clip-level preprocessing shared by all encoders."""

    sample_rate: int = 16000
    clip_seconds: float = 2.0

    def train(self, mode: bool = True):
        return super().train(False)

    def freeze(self):
        self.requires_grad_(False)
        return self.eval()

    @property
    def output_dim(self) -> int:
        raise NotImplementedError

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def clip_features(self, clip: np.ndarray) -> torch.Tensor:
        """Features of one clip (mono samples at ``sample_rate``)."""
        raise NotImplementedError

    def features(self, waveform, sample_rate: int, num_clips: int = 3, sampler: str = "imagebind") -> torch.Tensor:
        """A waveform -> ``[num_clips, ...]`` features, clips placed by the ImageBind sampler."""
        if sample_rate != self.sample_rate:
            raise ValueError(f"{type(self).__name__} expects {self.sample_rate} Hz audio, got {sample_rate} Hz")
        x = np.asarray(waveform, dtype=np.float32)
        if x.ndim == 2:
            x = x.mean(axis=0)
        slices = audio_lib.clip_sample_slices(len(x), sample_rate, num_clips, self.clip_seconds, sampler)
        return torch.stack([self.clip_features(x[s]) for s in slices])

    def load_features(self, path: str | os.PathLike, num_clips: int = 3, sampler: str = "imagebind") -> torch.Tensor:
        """Decode an audio file at the encoder's rate and return its clip features."""
        return self.features(audio_lib.load_audio(path, sr=self.sample_rate), self.sample_rate, num_clips, sampler)


# --------------------------------------------------------------------------- ImageBind audio branch
#
# Module and parameter names mirror facebookresearch/ImageBind so that the audio entries of
# imagebind_huge.pth load with strict=True (see tests/fixtures/imagebind_audio_keys.json).


class _PatchStem(nn.Module):
    def __init__(self, config: ImageBindAudioConfig):
        super().__init__()
        self.proj = nn.Conv2d(1, config.embed_dim, config.kernel_size, stride=config.stride, bias=False)
        self.norm_layer = nn.LayerNorm(config.embed_dim)  # torch default eps 1e-5, unlike the rest (1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_layer(self.proj(x).flatten(2).transpose(1, 2))


class _PositionEmbedding(nn.Module):
    def __init__(self, config: ImageBindAudioConfig):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_positions, config.embed_dim))


class _AudioPreprocessor(nn.Module):
    def __init__(self, config: ImageBindAudioConfig):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.rgbt_stem = _PatchStem(config)
        self.pos_embedding_helper = _PositionEmbedding(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.rgbt_stem(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return tokens + self.pos_embedding_helper.pos_embed


class _Mlp(nn.Module):
    def __init__(self, config: ImageBindAudioConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.embed_dim, config.embed_dim * config.mlp_ratio)
        self.act = nn.GELU()  # exact (erf) GELU, as upstream
        self.fc2 = nn.Linear(config.embed_dim * config.mlp_ratio, config.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    """Pre-norm ViT block; attention has ImageBind's extra learned key/value token (add_bias_kv)."""

    def __init__(self, config: ImageBindAudioConfig):
        super().__init__()
        d = config.embed_dim
        self.attn = nn.MultiheadAttention(d, config.num_heads, bias=True, add_bias_kv=True, batch_first=True)
        self.norm_1 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = _Mlp(config)
        self.norm_2 = nn.LayerNorm(d, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm_2(x))


class _Trunk(nn.Module):
    def __init__(self, config: ImageBindAudioConfig):
        super().__init__()
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.num_blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class _SelectCLS(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class _Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x, p=2, dim=-1)


class _LogitScale(nn.Module):
    """Upstream's fixed x20 (a persistent buffer in the checkpoint, so it must exist to load strictly)."""

    def __init__(self, config: ImageBindAudioConfig):
        super().__init__()
        self.register_buffer("log_logit_scale", torch.tensor(math.log(config.logit_scale_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.clamp(self.log_logit_scale.exp(), max=100)


@dataclass
class ImageBindAudioOutput(ModelOutput):
    """``audio_embeds``: [B, n_clips, D] post-processed; ``pooler_output``: head output per clip
    before normalisation; ``last_hidden_state``: trunk tokens per clip [B * n_clips, 229, 768]."""

    audio_embeds: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None


class ImageBindAudioEncoder(FrozenAudioEncoder, PreTrainedModel):
    """ImageBind-huge's audio branch, written from the paper's architecture and checked on a golden forward."""

    config_class = ImageBindAudioConfig
    config: ImageBindAudioConfig
    main_input_name = "input_features"
    input_modalities = ("audio",)
    _supports_sdpa = True
    clip_seconds = audio_lib.IMAGEBIND_CLIP_SECONDS

    def __init__(self, config: ImageBindAudioConfig):
        super().__init__(config)
        self.modality_preprocessors = nn.ModuleDict({"audio": _AudioPreprocessor(config)})
        self.modality_trunks = nn.ModuleDict({"audio": _Trunk(config)})
        self.modality_heads = nn.ModuleDict(
            {
                "audio": nn.Sequential(
                    nn.LayerNorm(config.embed_dim, eps=1e-6),
                    _SelectCLS(),
                    nn.Linear(config.embed_dim, config.out_embed_dim, bias=False),
                )
            }
        )
        self.modality_postprocessors = nn.ModuleDict({"audio": nn.Sequential(_Normalize(), _LogitScale(config))})
        self.post_init()
        self.freeze()

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, _AudioPreprocessor):
            init.normal_(module.cls_token, std=self.config.embed_dim**-0.5)
        elif isinstance(module, _PositionEmbedding):
            init.normal_(module.pos_embed, std=self.config.embed_dim**-0.5)
        elif isinstance(module, _LogitScale):
            init.constant_(module.log_logit_scale, math.log(self.config.logit_scale_init))

    @property
    def output_dim(self) -> int:
        return self.config.out_embed_dim

    def forward(self, input_features: torch.Tensor, **kwargs) -> ImageBindAudioOutput:
        """``input_features``: [B, n_clips, 1, mel, frames] (or [B, 1, mel, frames] for one clip)."""
        x = input_features if input_features.ndim == 5 else input_features.unsqueeze(1)
        batch, clips = x.shape[:2]
        x = x.flatten(0, 1).to(self.dtype)
        hidden = self.modality_trunks["audio"](self.modality_preprocessors["audio"](x))
        head = self.modality_heads["audio"](hidden)
        normalize, scale = self.modality_postprocessors["audio"]
        embeds = normalize(head)
        if self.config.apply_logit_scale:
            embeds = scale(embeds)
        return ImageBindAudioOutput(
            audio_embeds=embeds.view(batch, clips, -1), pooler_output=head, last_hidden_state=hidden
        )

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        return self(features).audio_embeds

    def clip_features(self, clip: np.ndarray) -> torch.Tensor:
        return audio_lib.imagebind_melspec(
            clip, num_mel_bins=self.config.num_mel_bins, target_length=self.config.target_length
        )

    def features(self, waveform, sample_rate: int, num_clips: int = 3, sampler: str = "imagebind") -> torch.Tensor:
        # Upstream reads channel 0 of stereo audio (Kaldi fbank); keep that rather than the mixin's mono mix.
        return audio_lib.imagebind_clips(
            waveform,
            sample_rate,
            num_clips=num_clips,
            sampler=sampler,
            num_mel_bins=self.config.num_mel_bins,
            target_length=self.config.target_length,
        )

    def load_features(self, path, num_clips: int = 3, sampler: str = "imagebind") -> torch.Tensor:
        x = audio_lib.load_audio(path, sr=self.sample_rate, mono=False)
        return self.features(x[0], self.sample_rate, num_clips, sampler)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path, *args, config: ImageBindAudioConfig | None = None, **kwargs
    ):
        """A saved encoder folder / hub id, or the official ``imagebind_huge.pth`` (audio keys only)."""
        path = Path(str(pretrained_model_name_or_path))
        if path.is_file():
            return cls.from_imagebind_checkpoint(path, config=config)
        return super().from_pretrained(pretrained_model_name_or_path, *args, config=config, **kwargs)

    @classmethod
    def from_imagebind_checkpoint(cls, path: str | os.PathLike, config: ImageBindAudioConfig | None = None):
        """Load the audio branch of a full ImageBind checkpoint, strictly.

        Every audio tensor must be present with the right shape and nothing else under
        ``*.audio.*`` may be left over; the other modalities (~1.1 B parameters) are ignored.
        """
        state = _read_state_dict(path)
        audio = {k: v for k, v in state.items() if k.split(".")[1:2] == ["audio"]}
        if not audio:
            raise ValueError(f"{path} has no ImageBind audio weights (no '<part>.audio.*' keys)")
        with torch.device("meta"):
            model = cls(config or ImageBindAudioConfig())
        model.load_state_dict(audio, strict=True, assign=True)
        model.config.name_or_path = str(path)
        return model.float().freeze()


def _read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        try:  # mmap: the full checkpoint is 4.8 GB and we keep only 86 M parameters of it
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


# --------------------------------------------------------------------------- transformers encoders


def _stack_clips(features: torch.Tensor, model: PreTrainedModel) -> tuple[int, int, torch.Tensor]:
    return features.shape[0], features.shape[1], features.flatten(0, 1).to(model.dtype)


class ASTAudioEncoder(FrozenAudioEncoder, ASTModel):
    """Audio Spectrogram Transformer; one embedding per clip = the pooled (CLS + distillation) token."""

    @property
    def clip_seconds(self) -> float:
        return 0.01 * self.config.max_length

    @property
    def output_dim(self) -> int:
        return self.config.hidden_size

    def __init__(self, config):
        super().__init__(config)
        self.freeze()

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """``features``: [B, n_clips, frames, mel] (AST's ``input_values`` per clip)."""
        b, c, x = _stack_clips(features, self)
        return self(input_values=x).pooler_output.view(b, c, -1)

    def clip_features(self, clip: np.ndarray) -> torch.Tensor:
        extractor = ASTFeatureExtractor(num_mel_bins=self.config.num_mel_bins, max_length=self.config.max_length)
        return extractor(clip, sampling_rate=self.sample_rate, return_tensors="pt").input_values[0]


class ClapAudioEncoder(FrozenAudioEncoder, ClapAudioModelWithProjection):
    """CLAP audio tower + projection (the embedding CLAP aligns with text)."""

    sample_rate = 48000
    clip_seconds = 10.0

    @property
    def output_dim(self) -> int:
        return self.config.projection_dim

    def __init__(self, config):
        super().__init__(config)
        self.freeze()

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """``features``: [B, n_clips, channels, frames, mel] (CLAP's ``input_features`` per clip)."""
        b, c, x = _stack_clips(features, self)
        # Clips never exceed CLAP's 10 s window, so the fusion branch ("is_longer") stays off.
        is_longer = None
        if self.config.enable_fusion:
            is_longer = torch.zeros(x.shape[0], 1, dtype=torch.bool, device=x.device)
        return self(input_features=x, is_longer=is_longer).audio_embeds.view(b, c, -1)

    def clip_features(self, clip: np.ndarray) -> torch.Tensor:
        from transformers import ClapFeatureExtractor

        extractor = ClapFeatureExtractor(feature_size=self.config.num_mel_bins, sampling_rate=self.sample_rate)
        truncation = "fusion" if self.config.enable_fusion else "rand_trunc"
        out = extractor(clip, sampling_rate=self.sample_rate, truncation=truncation, return_tensors="pt")
        return out.input_features[0]


class WhisperAudioEncoder(FrozenAudioEncoder, WhisperEncoder):
    """Whisper's encoder; one embedding per clip = the time-mean of its last hidden state."""

    clip_seconds = 30.0

    @property
    def output_dim(self) -> int:
        return self.config.d_model

    def __init__(self, config):
        super().__init__(config)
        self.freeze()

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """``features``: [B, n_clips, mel, 3000] (Whisper's log-mel input per clip)."""
        b, c, x = _stack_clips(features, self)
        return self(input_features=x).last_hidden_state.mean(dim=1).view(b, c, -1)

    def clip_features(self, clip: np.ndarray) -> torch.Tensor:
        from transformers import WhisperFeatureExtractor

        extractor = WhisperFeatureExtractor(feature_size=self.config.num_mel_bins)
        return extractor(clip, sampling_rate=self.sample_rate, return_tensors="pt").input_features[0]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Whisper checkpoints store a full encoder-decoder: load it and keep the encoder.

        A folder saved from this class (encoder only) loads directly.
        """
        from transformers import AutoConfig

        saved = AutoConfig.from_pretrained(pretrained_model_name_or_path)
        if cls.__name__ in (saved.architectures or []):
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs).freeze()
        full = WhisperModel.from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        encoder = cls(full.config)
        encoder.load_state_dict(full.get_encoder().state_dict(), strict=True)
        return encoder.to(full.dtype).freeze()


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class EncoderSpec:
    """How to build (random) and load (pretrained) one kind of encoder."""

    cls: type
    description: str
    default_config: Callable[[], PreTrainedConfig]


def _default_config(name: str) -> Callable[[], PreTrainedConfig]:
    def make():
        from transformers import AutoConfig

        kwargs = dict(ENCODER_DEFAULT_CONFIGS[name])
        return AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)

    return make


AUDIO_ENCODERS: dict[str, EncoderSpec] = {
    name: EncoderSpec(cls, description, _default_config(name))
    for name, cls, description in [
        ("imagebind", ImageBindAudioEncoder, "ImageBind-huge audio branch (load imagebind_huge.pth)"),
        ("tiny", ImageBindAudioEncoder, "ImageBind architecture at toy width, for tests"),
        ("ast", ASTAudioEncoder, "Audio Spectrogram Transformer (transformers ASTModel)"),
        ("clap", ClapAudioEncoder, "CLAP audio tower + projection"),
        ("whisper", WhisperAudioEncoder, "Whisper encoder, time-mean pooled"),
    ]
}


def register_audio_encoder(name: str, cls: type, description: str, default_config: Callable[[], PreTrainedConfig]):
    """Add an encoder class honouring the ``FrozenAudioEncoder`` contract."""
    AUDIO_ENCODERS[name] = EncoderSpec(cls, description, default_config)


def audio_encoder_spec(name: str) -> EncoderSpec:
    try:
        return AUDIO_ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown audio encoder {name!r}; registered: {sorted(AUDIO_ENCODERS)}") from None


def build_audio_encoder(name: str, config: PreTrainedConfig | None = None) -> PreTrainedModel:
    """A randomly initialised encoder (its weights come from a checkpoint afterwards)."""
    spec = audio_encoder_spec(name)
    return spec.cls(config if config is not None else spec.default_config())


def load_audio_encoder(name: str, path_or_id: str | os.PathLike, **kwargs) -> PreTrainedModel:
    """Pretrained weights: ``imagebind_huge.pth`` for ImageBind, a local folder or hub id otherwise."""
    spec = audio_encoder_spec(name)
    if issubclass(spec.cls, ImageBindAudioEncoder) and Path(str(path_or_id)).is_file():
        # A raw checkpoint has no config: the registry entry says which architecture it is.
        kwargs.setdefault("config", spec.default_config())
    return spec.cls.from_pretrained(str(path_or_id), **kwargs).freeze()
