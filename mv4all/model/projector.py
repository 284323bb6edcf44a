"""The trainable bridge from the audio encoder's space to the LLM's embedding space."""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN

from .configuration import MV4AllConfig


class AudioProjector(nn.Module):
    """``linear``: one Linear(D, hidden) with bias, as in NExT-GPT/DeepResonance (the paper's
    stage 1 trains only this). ``mlp``: Linear-act-Linear, Llava-1.5 style, for encoders whose
    space is further from the LLM's."""

    def __init__(self, config: MV4AllConfig, input_dim: int):
        super().__init__()
        hidden = config.text_config.hidden_size
        self.linear_1 = nn.Linear(input_dim, hidden, bias=config.projector_bias)
        if config.projector_type == "mlp":
            self.act = ACT2FN[config.projector_hidden_act]
            self.linear_2 = nn.Linear(hidden, hidden, bias=config.projector_bias)

    def forward(self, audio_embeds: torch.Tensor) -> torch.Tensor:
        hidden = self.linear_1(audio_embeds)
        if hasattr(self, "linear_2"):
            hidden = self.linear_2(self.act(hidden))
        return hidden
