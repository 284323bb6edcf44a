"""Token counts that work offline, so a cost estimate never needs the network.

Text: tiktoken when it is installed *and* its encoding file is already in the local cache
(tiktoken would otherwise download it); else a regex approximation of BPE pieces, labelled
"approx.". Images: OpenAI's published per-model rules (tiles or 32 px patches), including
gpt-4o-mini's inflated image budget (2,833 tokens for a low-detail image).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

from builders.llm.images import decode_data_url, jpeg_size

# ---------------------------------------------------------------------------- image rules

# (base tokens, tokens per 512 px tile) for "tile" models; low detail bills the base only.
TILE_MODELS: dict[str, tuple[int, int]] = {
    "gpt-4o-mini": (2833, 5667),
    "gpt-4o": (85, 170),
    "chatgpt-4o": (85, 170),
    "gpt-4.1": (85, 170),
    "gpt-4.5": (85, 170),
    "gpt-4-turbo": (85, 170),
    "gpt-5": (70, 140),
    "o1": (75, 150),
    "o3": (75, 150),
    "computer-use-preview": (65, 129),
}
# 32 px patches, capped at 1,536, times a per-model multiplier; "detail" does not apply.
PATCH_MODELS: dict[str, float] = {
    "gpt-4.1-mini": 1.62,
    "gpt-4.1-nano": 2.46,
    "gpt-5-mini": 1.62,
    "gpt-5-nano": 2.46,
    "o4-mini": 1.72,
}
PATCH_CAP = 1536


def _family(model: str, table: dict) -> str | None:
    """Longest table key that is the model or a dated/suffixed variant of it."""
    name = model.rsplit("/", 1)[-1].lower()
    best = None
    for key in table:
        if (name == key or name.startswith(key + "-")) and (best is None or len(key) > len(best)):
            best = key
    return best


def image_rule(model: str) -> tuple[str, Any] | None:
    tile, patch = _family(model, TILE_MODELS), _family(model, PATCH_MODELS)
    if tile and (not patch or len(tile) > len(patch)):
        return "tile", TILE_MODELS[tile]
    if patch:
        return "patch", PATCH_MODELS[patch]
    return None


def image_tokens(model: str, width: int, height: int, detail: str = "low") -> int | None:
    """Billed input tokens of one image; None for a model whose rule is unknown."""
    rule = image_rule(model)
    if rule is None:
        return None
    kind, value = rule
    if kind == "patch":
        return _patch_tokens(width, height, value)
    base, per_tile = value
    if detail == "low":
        return base
    w, h = float(width), float(height)
    if max(w, h) > 2048:  # fit inside 2048 x 2048 (downscale only)
        s = 2048 / max(w, h)
        w, h = w * s, h * s
    if min(w, h) > 768:  # shortest side to 768 (downscale only: small images are not enlarged)
        s = 768 / min(w, h)
        w, h = w * s, h * s
    tiles = math.ceil(math.floor(w) / 512) * math.ceil(math.floor(h) / 512)
    return base + per_tile * tiles


def _patch_tokens(width: int, height: int, multiplier: float) -> int:
    patches = math.ceil(width / 32) * math.ceil(height / 32)
    if patches > PATCH_CAP:
        r = math.sqrt(32 * 32 * PATCH_CAP / (width * height))
        r *= min(math.floor(width * r / 32) / (width * r / 32), math.floor(height * r / 32) / (height * r / 32))
        patches = min(PATCH_CAP, math.ceil(width * r / 32) * math.ceil(height * r / 32))
    return math.ceil(patches * multiplier)


# ---------------------------------------------------------------------------- text


_PIECES = re.compile(r"'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+|\s+", re.UNICODE)


def approx_tokens(text: str) -> int:
    """BPE-like estimate: one token per word piece, more for long words and non-ASCII runs."""
    n = 0
    for piece in _PIECES.findall(text):
        core = piece.strip()
        if not core:
            n += 1 if "\n" in piece or len(piece) > 1 else 0
            continue
        if core.isascii():
            n += 1 if len(core) <= 7 else math.ceil(len(core) / 5)
        else:
            n += max(1, math.ceil(len(core.encode("utf-8")) / 3))
    return n


def _encoding_name(model: str) -> str:
    name = model.rsplit("/", 1)[-1].lower()
    return "o200k_base" if name.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt")) \
        else "cl100k_base"


def _local_tiktoken(encoding: str) -> Callable[[str], int] | None:
    if importlib.util.find_spec("tiktoken") is None:
        return None
    url = f"https://openaipublic.blob.core.windows.net/encodings/{encoding}.tiktoken"
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") or \
        os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not os.path.isfile(os.path.join(cache, hashlib.sha1(url.encode()).hexdigest())):
        return None
    try:
        import tiktoken

        enc = tiktoken.get_encoding(encoding)
    except Exception:  # noqa: BLE001 - a broken cache falls back to the approximation
        return None
    return lambda text: len(enc.encode(text, disallowed_special=()))


@dataclass(frozen=True)
class TextCounter:
    method: str  # "tiktoken:<encoding>" or "approx."
    count: Callable[[str], int]

    @property
    def exact(self) -> bool:
        return self.method != "approx."


@functools.lru_cache(maxsize=None)
def text_counter(model: str) -> TextCounter:
    encoding = _encoding_name(model)
    exact = _local_tiktoken(encoding)
    if exact is not None:
        return TextCounter(f"tiktoken:{encoding}", exact)
    return TextCounter("approx.", approx_tokens)


# ---------------------------------------------------------------------------- whole requests

MESSAGE_OVERHEAD = 3  # per chat message (role + separators), OpenAI cookbook
REPLY_PRIMING = 3


@dataclass
class RequestTokens:
    text: int = 0
    images: int = 0
    image_count: int = 0
    images_known: bool = True
    method: str = "approx."

    @property
    def total(self) -> int | None:
        return self.text + self.images if self.images_known else None


def request_tokens(body: dict[str, Any]) -> RequestTokens:
    """Input tokens of a chat-completions body: messages, images and the response schema."""
    model = body["model"]
    counter = text_counter(model)
    out = RequestTokens(method=counter.method)
    out.text += REPLY_PRIMING
    for message in body["messages"]:
        out.text += MESSAGE_OVERHEAD
        content = message.get("content")
        if isinstance(content, str):
            out.text += counter.count(content)
            continue
        for part in content or []:
            if part.get("type") == "text":
                out.text += counter.count(part["text"])
            elif part.get("type") == "image_url":
                image = part["image_url"]
                w, h = jpeg_size(decode_data_url(image["url"]))
                n = image_tokens(model, w, h, image.get("detail", "auto"))
                out.image_count += 1
                if n is None:
                    out.images_known = False
                else:
                    out.images += n
    fmt = body.get("response_format")
    if fmt and fmt.get("type") == "json_schema":
        out.text += counter.count(json.dumps(fmt["json_schema"]["schema"], separators=(",", ":")))
    return out
