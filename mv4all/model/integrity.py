"""Checks that what a run calls "frozen" really stayed frozen, whatever dtype it ended in.

DeepSpeed (and ``accelerate`` with a whole-module cast) converts every parameter of the wrapped
model to bf16/fp16 in place, the frozen fp32 audio encoder included. A byte hash taken before
training and compared after would then report a change that is only a cast. So the fingerprint
keeps, per frozen tensor, one digest for each dtype it may legitimately end in (its own, and the
training precision's): rounding to bf16/fp16 is deterministic, so a cast tensor hashes exactly
like the original cast the same way, and any real change to a weight still shows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

__all__ = ["FrozenFingerprint", "FrozenWeightsChanged", "frozen_fingerprint", "tensor_digest"]


class FrozenWeightsChanged(RuntimeError):
    """A frozen parameter differs from its value before training (not just its dtype)."""


def tensor_digest(tensor: torch.Tensor, dtype: torch.dtype | None = None) -> str:
    """sha256 of a tensor's bytes after an optional cast (shape included)."""
    t = tensor.detach()
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    t = t.cpu().contiguous().reshape(-1)
    digest = hashlib.sha256(f"{t.dtype}|{tuple(tensor.shape)}\n".encode())
    if t.numel():
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class FrozenFingerprint:
    """Per frozen parameter: ``{dtype name: digest}`` for every dtype it may end training in."""

    digests: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        """One hash of the weights as they were before training (their own dtype): what a run records."""
        digest = hashlib.sha256()
        for name in sorted(self.digests):
            own = self.digests[name]["own"]
            digest.update(f"{name}|{own}\n".encode())
        return digest.hexdigest()

    def check(self, model: torch.nn.Module) -> None:
        """Raise ``FrozenWeightsChanged`` naming the first parameter whose values changed."""
        params = dict(_frozen(model))
        missing = sorted(set(self.digests) - set(params))
        if missing:
            raise FrozenWeightsChanged(f"frozen parameter {missing[0]} is no longer frozen or no longer exists")
        for name, param in params.items():
            if name not in self.digests:
                raise FrozenWeightsChanged(f"parameter {name} was trainable before training and is frozen now")
            known = self.digests[name]
            key = str(param.dtype)
            if key not in known:
                raise FrozenWeightsChanged(
                    f"frozen parameter {name} is {param.dtype} after training; expected one of "
                    f"{sorted(k for k in known if k != 'own')}")
            if tensor_digest(param) != known[key]:
                raise FrozenWeightsChanged(f"frozen parameter {name} changed during training (not only its dtype)")


def _frozen(model: torch.nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    for name, param in model.named_parameters():
        if not param.requires_grad and not param.is_meta:
            yield name, param


def frozen_fingerprint(model: torch.nn.Module, cast_dtypes: Iterable[torch.dtype] = ()) -> FrozenFingerprint:
    """Fingerprint every frozen parameter as it is and as it would be after a cast to ``cast_dtypes``."""
    casts = [d for d in dict.fromkeys(cast_dtypes) if d is not None]
    out: dict[str, dict[str, str]] = {}
    with torch.no_grad():
        for name, param in _frozen(model):
            own = tensor_digest(param)
            known = {"own": own, str(param.dtype): own}
            if param.is_floating_point():
                for dtype in casts:
                    if str(dtype) not in known:
                        known[str(dtype)] = tensor_digest(param, dtype)
            out[name] = known
    return FrozenFingerprint(out)
