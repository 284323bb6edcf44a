"""Everything between a dataset row or an audio file and the model's tensors, in one object.

Like Llava's processor, ``MV4AllProcessor`` owns the prompt template (through
``mv4all.inputs.render_prompt``), the ``<audio>`` token, and the audio path: decode, cut the
window the model was trained on, turn it into the encoder's input. Training (the collator),
batch prediction, single-song ``describe`` and ``mv4all embed`` all go through it, so a clip is
heard the same way everywhere. The model itself only ever sees tensors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..audio import load_audio
from ..decoding import STOP
from ..inputs import AUDIO_PLACEHOLDER, MV_INSTRUCTION, Combination, parse_combination, render_prompt
from ..schema import CLIP_SECONDS

IGNORE_INDEX = -100
WINDOW_SECONDS = CLIP_SECONDS  # the model hears what it was trained on: one dataset clip's length


def add_audio_token(tokenizer, token: str = AUDIO_PLACEHOLDER) -> int:
    """Make ``<audio>`` one special token (never split, skipped when decoding); return its id.

    Also gives Llama-style tokenizers without a pad token one (``<unk>``, as NExT-GPT does).
    """
    ids = tokenizer.encode(token, add_special_tokens=False)
    if len(ids) != 1 or tokenizer.convert_ids_to_tokens(ids[0]) != token:
        tokenizer.add_tokens([token], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer.convert_tokens_to_ids(token)


@dataclass
class AudioWindow:
    """Which part of the file the model heard, so the caller can tell the user."""

    path: str
    duration: float  # seconds in the file
    start: float  # window start in the file
    seconds: float  # window length (the model always hears ``WINDOW_SECONDS``)
    padded: float = 0.0  # seconds of zeros appended

    @property
    def note(self) -> str | None:
        if self.padded > 0:
            return (f"audio is {self.duration:.1f} s, shorter than the {self.seconds:g} s the model was trained on: "
                    f"zero-padded by {self.padded:.1f} s")
        if self.duration > self.seconds + 1e-6:
            return (f"audio is {self.duration:.1f} s: using the {self.seconds:g} s window "
                    f"{self.start:.1f}-{self.start + self.seconds:.1f} s")
        return None


def window_audio(
    path: str | os.PathLike, sample_rate: int, start: float | None = None, seconds: float = WINDOW_SECONDS
) -> tuple[np.ndarray, AudioWindow]:
    """Decode any file PyAV reads -> ``[channels, seconds * sample_rate]`` and where it came from.

    Longer audio gives its centre window (or the one at ``start``, clamped to the last full one);
    shorter audio is zero-padded. Raises ``AudioDecodeError`` for missing, empty or corrupt files.
    """
    if start is not None and start < 0:
        raise ValueError(f"--start must be >= 0, got {start}")
    audio = load_audio(path, sr=sample_rate, mono=False)
    n = audio.shape[1]
    want = round(seconds * sample_rate)
    duration = n / sample_rate
    if n > want:
        first = (n - want) // 2 if start is None else min(round(start * sample_rate), n - want)
        audio = audio[:, first : first + want]
        return np.ascontiguousarray(audio), AudioWindow(str(path), duration, first / sample_rate, seconds)
    padded = want - n
    if padded:
        audio = np.pad(audio, ((0, 0), (0, padded)))
    return audio, AudioWindow(str(path), duration, 0.0, seconds, padded / sample_rate)


class MV4AllProcessor:
    """Prompt tokens and encoder input for one model.

    tokenizer: with ``<audio>`` (``add_audio_token``); ``None`` for audio-only use (``mv4all embed``).
    audio_encoder / audio_config: the encoder's registry name and config; a weightless (meta-device)
        copy is kept for its preprocessing only, so the processor is cheap to send to DataLoader workers.
    clips_per_audio / clip_sampler: how the window is cut into encoder clips (``MV4AllConfig``).
    audio_tokens: ``<audio>`` tokens per audio (``config.num_audio_tokens``).
    """

    def __init__(self, tokenizer=None, *, audio_encoder: str | None = None, audio_config=None,
                 clips_per_audio: int = 3, clip_sampler: str = "imagebind", audio_tokens: int = 1):
        self.tokenizer = tokenizer
        self.audio_tokens = int(audio_tokens)
        self.clips_per_audio = int(clips_per_audio)
        self.clip_sampler = clip_sampler
        self.encoder = None
        if audio_encoder is not None:
            from .encoders import build_audio_encoder

            with torch.device("meta"):
                self.encoder = build_audio_encoder(audio_encoder, audio_config)

    @classmethod
    def from_config(cls, tokenizer, config) -> MV4AllProcessor:
        """From an ``MV4AllConfig`` (no weights needed)."""
        return cls(tokenizer, audio_encoder=config.audio_encoder, audio_config=config.audio_config,
                   clips_per_audio=config.clips_per_audio, clip_sampler=config.clip_sampler,
                   audio_tokens=config.num_audio_tokens)

    @classmethod
    def from_model(cls, model, tokenizer=None) -> MV4AllProcessor:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        if not hasattr(base.config, "audio_encoder"):  # a plain causal LM: the text-only baseline
            return cls(tokenizer)
        return cls.from_config(tokenizer, base.config)

    @classmethod
    def for_config(cls, tokenizer, cfg: Mapping[str, Any]) -> MV4AllProcessor:
        """From a training config, before any weights load (token counts, memory estimate)."""
        from .configuration import MV4AllConfig

        return cls.from_config(tokenizer, MV4AllConfig(audio_encoder=cfg["audio_encoder"],
                                                       tokens_per_audio=cfg.get("tokens_per_audio", 1)))

    # ------------------------------------------------------------------ text

    @property
    def audio_token_id(self) -> int | None:
        return self.tokenizer.convert_tokens_to_ids(AUDIO_PLACEHOLDER)

    @property
    def has_audio(self) -> bool:
        """Whether this model hears (a text-only baseline LLM does not)."""
        return self.encoder is not None

    # Where an answer ends: the template's "\n###" (generation stops on the string) or the eos token.
    stop_strings: tuple[str, ...] = (STOP,)

    @property
    def end_token_ids(self) -> list[int]:
        return [self.tokenizer.eos_token_id]

    @staticmethod
    def uses_audio(combination: str | Combination) -> bool:
        return parse_combination(combination).uses_audio

    def prompt_ids(self, row: Any, combination: str | Combination, instruction: str | None = None,
                   output: str | None = None) -> tuple[list[int], list[int]]:
        """``(input_ids, labels)`` of one row; labels are -100 outside the output (``None``: prompt only).

        Like NExT-GPT, prompt and output are tokenised separately, which keeps the label boundary exact
        for any tokenizer and makes the inference prompt the training prefix token for token.
        """
        instruction = instruction or _get(row, "instruction") or MV_INSTRUCTION
        prompt = render_prompt(row, combination, instruction, output=output, audio_tokens=self.audio_tokens)
        bos = [] if self.tokenizer.bos_token_id is None else [self.tokenizer.bos_token_id]
        # The prefix ends with "Assistant: "; the output's own leading space comes from the
        # tokenizer (SentencePiece's prefix space), as in NExT-GPT's "### Assistant:" + output.
        prefix = bos + self._tokens(prompt.prefix.rstrip(" "))
        target = self._tokens(prompt.target) if prompt.target else []
        return prefix + target, [IGNORE_INDEX] * len(prefix) + target

    def _tokens(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # ------------------------------------------------------------------ audio

    @property
    def sample_rate(self) -> int:
        return int(self._encoder().sample_rate)

    def _encoder(self):
        if self.encoder is None:
            raise ValueError("this model has no audio encoder: its inputs cannot include music")
        return self.encoder

    def audio_features(self, path: str | os.PathLike, start: float | None = None) -> tuple[torch.Tensor, AudioWindow]:
        """``(encoder input [n_clips, ...], AudioWindow)`` for one audio file."""
        audio, window = window_audio(path, self.sample_rate, start=start)
        return self.waveform_features(audio), window

    def waveform_features(self, waveform) -> torch.Tensor:
        """A waveform at ``sample_rate`` (``[n]`` or ``[channels, n]``) -> encoder input ``[n_clips, ...]``."""
        return self._encoder().features(waveform, self.sample_rate, self.clips_per_audio, self.clip_sampler)

    def row_features(self, row: Mapping[str, Any], audio_root: str | os.PathLike) -> torch.Tensor:
        """Encoder input for a dataset row: its audio is ``audio_root / row["audio"]``."""
        return self.audio_features(Path(audio_root) / _get(row, "audio"))[0]

    def batch_audio(self, kind: str, values: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """One batch tensor of per-row audio (``input_features`` or cached ``audio_embeds``)."""
        return {kind: torch.stack(values)}


def _get(row: Any, name: str) -> Any:
    if isinstance(row, Mapping):
        return row.get(name)
    return getattr(row, name, None)
