"""The music-to-text model: frozen audio encoder -> projector -> causal LM (NExT-GPT's input side).

Shaped like transformers' Llava on purpose: TRL 1.16's ``SFTTrainer`` computes its loss by
calling ``model.base_model(...)``, reading ``last_hidden_state`` and multiplying by the output
embeddings, so the outer class must own ``lm_head`` and the inner model must return hidden
states of a base LM (not a ``*ForCausalLM``). Audio enters as embeddings written at the
``<audio>`` placeholder positions of ``input_ids``.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.utils import can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg

from .configuration import MV4AllConfig
from .encoders import build_audio_encoder, load_audio_encoder
from .projector import AudioProjector


@dataclass
class MV4AllModelOutputWithPast(BaseModelOutputWithPast):
    """``audio_hidden_states``: the projected audio tokens [n_audio, tokens_per_audio, hidden]."""

    audio_hidden_states: torch.Tensor | None = None


@dataclass
class MV4AllCausalLMOutputWithPast(CausalLMOutputWithPast):
    audio_hidden_states: torch.Tensor | None = None


def pool_clip_embeddings(audio_embeds: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Encoder output per audio [n_audio, n_clips, D] -> [n_audio, num_tokens, D].

    One token is the mean over clips (ImageBind/NExT-GPT: the mean of the per-clip normalised
    embeddings, not re-normalised). ``[n_audio, D]`` means already pooled.
    """
    if audio_embeds.ndim == 2:
        audio_embeds = audio_embeds.unsqueeze(1)
    if audio_embeds.ndim != 3:
        raise ValueError(
            f"audio embeddings must be [n_audio, n_clips, D] or [n_audio, D], got {tuple(audio_embeds.shape)}"
        )
    if num_tokens == 1:
        return audio_embeds.mean(dim=1, keepdim=True)
    if audio_embeds.shape[1] != num_tokens:
        raise ValueError(
            f"{num_tokens} audio tokens need {num_tokens} clip embeddings per audio, got {audio_embeds.shape[1]}"
        )
    return audio_embeds


class MV4AllPreTrainedModel(PreTrainedModel):
    config_class = MV4AllConfig
    config: MV4AllConfig
    base_model_prefix = "model"
    input_modalities = ("audio", "text")
    supports_gradient_checkpointing = True
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info=True
        if hasattr(model, "get_audio_encoder"):
            # Loading re-creates parameters with requires_grad=True; the encoder must stay frozen.
            model.get_audio_encoder().freeze()
        return loaded


class MV4AllModel(MV4AllPreTrainedModel):
    """Audio encoder (frozen) + projector (trainable) + base language model (no LM head)."""

    def __init__(self, config: MV4AllConfig):
        super().__init__(config)
        self.audio_encoder = build_audio_encoder(config.audio_encoder, config.audio_config)
        self.projector = AudioProjector(config, self.audio_encoder.output_dim)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self.language_model.set_input_embeddings(value)

    def get_audio_encoder(self):
        return self.audio_encoder

    @torch.no_grad()
    def encode_audio(self, input_features: torch.Tensor) -> torch.Tensor:
        """Raw clip features -> per-clip encoder embeddings [n_audio, n_clips, D] (what the cache stores)."""
        # The encoder's own dtype: a whole-module cast (DeepSpeed bf16/fp16) may have changed it.
        weight = next(self.audio_encoder.parameters())
        return self.audio_encoder.encode(input_features.to(weight.device, weight.dtype))

    def get_audio_features(
        self, input_features: torch.Tensor | None = None, audio_embeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Projected audio tokens [n_audio, num_audio_tokens, hidden] from features or cached embeddings."""
        if audio_embeds is None:
            audio_embeds = self.encode_audio(input_features)
        pooled = pool_clip_embeddings(audio_embeds, self.config.num_audio_tokens)
        weight = self.projector.linear_1.weight
        return self.projector(pooled.to(weight.device, weight.dtype))

    def get_placeholder_mask(self, input_ids, inputs_embeds, audio_hidden: torch.Tensor | None) -> torch.Tensor:
        """Boolean [B, T, 1] mask of ``<audio>`` positions, checked against the number of audio tokens."""
        token_id = self.config.audio_token_id
        if token_id is None:
            raise ValueError("config.audio_token_id is not set: add the <audio> token to the tokenizer first")
        if input_ids is None:
            placeholder = self.get_input_embeddings()(torch.tensor(token_id, device=inputs_embeds.device))
            mask = (inputs_embeds == placeholder).all(-1)
        else:
            mask = input_ids == token_id
        found = int(mask.sum())
        wanted = 0 if audio_hidden is None else audio_hidden.shape[0] * audio_hidden.shape[1]
        if found != wanted:
            raise ValueError(
                f"the prompt has {found} <audio> tokens but {wanted} audio embeddings were given "
                f"({self.config.num_audio_tokens} per audio)"
            )
        return mask.unsqueeze(-1)

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        input_features: torch.Tensor | None = None,
        audio_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> MV4AllModelOutputWithPast:
        r"""
        input_features: raw encoder features per audio in the batch, e.g. ImageBind fbank clips
            [n_audio, n_clips, 1, 128, 204]; ``n_audio`` counts audios in prompt order (rows without
            audio contribute none).
        audio_embeds: precomputed encoder embeddings [n_audio, n_clips, D] (the embedding cache),
            used instead of running the encoder.
        """
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if input_features is not None and audio_embeds is not None:
            raise ValueError("pass either input_features or audio_embeds, not both")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)

        audio_hidden = None
        if input_features is not None or audio_embeds is not None:
            audio_hidden = self.get_audio_features(input_features, audio_embeds)
            mask = self.get_placeholder_mask(input_ids, inputs_embeds, audio_hidden)
            audio_hidden = audio_hidden.to(inputs_embeds.device, inputs_embeds.dtype)
            inputs_embeds = inputs_embeds.masked_scatter(mask, audio_hidden)
        elif input_ids is not None and _is_prefill(cache) and self.config.audio_token_id is not None:
            # A forgotten audio tensor would silently train on the placeholder's own embedding.
            self.get_placeholder_mask(input_ids, inputs_embeds, None)

        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        return MV4AllModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            audio_hidden_states=audio_hidden,
        )


def _is_prefill(cache) -> bool:
    return cache is None or cache.get_seq_length() == 0


class MV4AllForConditionalGeneration(MV4AllPreTrainedModel, GenerationMixin):
    def __init__(self, config: MV4AllConfig):
        super().__init__(config)
        self.model = MV4AllModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        # Any base LM, not only Llama: tie to wherever its input embeddings live (GPT-2: "wte").
        embed = self.model.get_input_embeddings()
        name = next(n for n, module in self.model.language_model.named_modules() if module is embed)
        self._tied_weights_keys = {"lm_head.weight": f"model.language_model.{name}.weight"}
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module):
        self.lm_head = value

    def get_audio_encoder(self):
        return self.model.audio_encoder

    def freeze_language_model(self):
        """Stage 1 (paper): train the projector only; the encoder is frozen already."""
        self.model.language_model.requires_grad_(False)
        self.lm_head.requires_grad_(False)
        return self

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        input_features: torch.Tensor | None = None,
        audio_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> MV4AllCausalLMOutputWithPast:
        outputs = self.model(
            input_ids=input_ids,
            input_features=input_features,
            audio_embeds=audio_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, keep, :])

        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )
        return MV4AllCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            audio_hidden_states=outputs.audio_hidden_states,
        )

    def prepare_inputs_for_generation(self, *args, audio_embeds=None, is_first_iteration=False, **kwargs):
        # ``input_features`` is dropped after prefill by transformers itself; ``audio_embeds`` is
        # our own name, so drop it the same way (decode steps carry no <audio> tokens).
        inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        if audio_embeds is not None and (is_first_iteration or not kwargs.get("use_cache", True)):
            inputs["audio_embeds"] = audio_embeds
        return inputs

    @classmethod
    def from_language_model(
        cls,
        language_model: str | os.PathLike | PreTrainedModel,
        audio_encoder: str = "imagebind",
        audio_encoder_path: str | os.PathLike | None = None,
        tokenizer=None,
        language_model_kwargs: dict | None = None,
        **config_kwargs,
    ) -> "MV4AllForConditionalGeneration":
        """Assemble a fresh model from a pretrained causal LM and a (pretrained) encoder.

        The LM and encoder modules are moved in as they are (no 7B random init); only the
        projector is new. With ``tokenizer``, ``<audio>`` is added to it (embeddings resized)
        and ``audio_token_id`` set. Without ``audio_encoder_path`` the encoder is random, which
        is only useful for tests.
        """
        from .collator import add_audio_token

        lm = language_model
        if not isinstance(lm, PreTrainedModel):
            lm = AutoModelForCausalLM.from_pretrained(language_model, **(language_model_kwargs or {}))
        if audio_encoder_path is not None:
            encoder = load_audio_encoder(audio_encoder, audio_encoder_path)
        else:
            encoder = build_audio_encoder(audio_encoder, config_kwargs.pop("audio_config", None))
        if tokenizer is not None:
            config_kwargs["audio_token_id"] = add_audio_token(tokenizer)
            if len(tokenizer) > lm.get_input_embeddings().num_embeddings:
                lm.resize_token_embeddings(len(tokenizer))
        config = MV4AllConfig(
            text_config=lm.config,
            audio_encoder=audio_encoder,
            audio_config=encoder.config,
            audio_encoder_path=None if audio_encoder_path is None else str(audio_encoder_path),
            **config_kwargs,
        )
        with torch.device("meta"):
            model = cls(config)
        model.model.language_model = lm.base_model
        model.lm_head = lm.get_output_embeddings()
        model.model.audio_encoder = encoder
        # The projector trains, so it is float32 even beside a half-precision LLM.
        projector = AudioProjector(config, encoder.output_dim).to(device=lm.device, dtype=torch.float32)
        projector.apply(model._init_weights)
        model.model.projector = projector
        model.generation_config = copy.deepcopy(lm.generation_config)  # ours, not the LLM's shared object
        if config.audio_token_id is not None:  # never generate a placeholder
            model.generation_config.suppress_tokens = [config.audio_token_id]
        return model


AutoModel.register(MV4AllConfig, MV4AllModel, exist_ok=True)
AutoModelForCausalLM.register(MV4AllConfig, MV4AllForConditionalGeneration, exist_ok=True)
