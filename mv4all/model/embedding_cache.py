"""Frozen-encoder outputs computed once (``mv4all embed``) and read by training.

The audio encoder is frozen in both stages, so its per-clip embeddings are a pure function of
(weights, audio file, clip placement). ``mv4all embed`` computes them for every id of both dataset
configs and writes one folder::

    embeddings.safetensors   one tensor "embeddings" [n_ids, n_clips, D] (float32)
    index.json               ids (row order), encoder name/path/weights sha256, clips, sampler, dim

Training then passes ``EmbeddingCache(folder)`` as ``MV4AllCollator(audio_embeddings=...)`` and
never runs the encoder; ``EmbeddingCache.check`` refuses a cache made by other weights or clips.
Without a cache, the processor (``AudioFeatureReader``) computes encoder *inputs* (decode + fbank) in the
DataLoader workers, and the model runs the encoder in its forward.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..data import load_split, read_build_info

EMBEDDINGS_FILE = "embeddings.safetensors"
INDEX_FILE = "index.json"
CACHE_VERSION = 1


class AudioFeatureReader:
    """``row -> encoder input [n_clips, ...]`` for rows whose ``audio`` is relative to ``audio_root``.

    The processor's audio path (decode, window, clips), bound to one folder: what DataLoader workers
    call for training without a cache and for ``mv4all embed``.
    """

    def __init__(self, processor, audio_root: str | os.PathLike):
        self.processor = processor
        self.audio_root = Path(audio_root)

    @classmethod
    def for_model(cls, model, audio_root: str | os.PathLike) -> "AudioFeatureReader":
        from .processing import MV4AllProcessor

        return cls(MV4AllProcessor.from_model(model), audio_root)

    def __call__(self, row: Mapping[str, Any]) -> torch.Tensor:
        return self.processor.row_features(row, self.audio_root)


def dataset_audio(dataset: str | os.PathLike, configs=("mv_description", "music_caption")) -> dict[str, str]:
    """``id -> relative audio path`` over the train and test splits of the given dataset configs."""
    items: dict[str, str] = {}
    for name in configs:
        for split in ("train", "test"):
            try:
                rows = load_split(dataset, name, split)
            except (FileNotFoundError, ValueError):
                continue
            for row_id, audio in zip(rows["id"], rows["audio"]):
                items.setdefault(row_id, audio)
    if not items:
        raise ValueError(f"{dataset} has no rows in configs {list(configs)}")
    return dict(sorted(items.items()))


class _FeatureDataset(torch.utils.data.Dataset):
    def __init__(self, ids: list[str], reader: Callable):
        self.ids, self.reader = ids, reader

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.reader({"audio": self.ids[i][1]})


@torch.no_grad()
def compute_embeddings(
    encoder,
    items: Mapping[str, str],
    audio_root: str | os.PathLike,
    clips: int,
    sampler: str = "imagebind",
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """``id -> [clips, D]`` for every ``id -> audio path`` in ``items`` (features in DataLoader workers)."""
    from .processing import MV4AllProcessor

    processor = MV4AllProcessor(audio_encoder=_registry_name(encoder), audio_config=encoder.config,
                                clips_per_audio=clips, clip_sampler=sampler)
    reader = AudioFeatureReader(processor, audio_root)
    keys = list(items.items())
    loader = torch.utils.data.DataLoader(
        _FeatureDataset(keys, reader), batch_size=batch_size, num_workers=num_workers, shuffle=False
    )
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    encoder = encoder.to(device).eval()
    out: dict[str, torch.Tensor] = {}
    done = 0
    for features in loader:
        embeds = encoder.encode(features.to(device)).float().cpu()
        for j in range(embeds.shape[0]):
            out[keys[done + j][0]] = embeds[j].contiguous()
        done += embeds.shape[0]
        if progress is not None:
            progress(embeds.shape[0])
    return out


def _registry_name(encoder) -> str:
    from .encoders import AUDIO_ENCODERS

    name = getattr(encoder, "_mv4all_registry_name", None)
    if name:
        return name
    for key, spec in AUDIO_ENCODERS.items():
        if type(encoder) is spec.cls:
            return key
    raise ValueError(f"{type(encoder).__name__} is not a registered audio encoder")


def save_embedding_cache(out: str | os.PathLike, embeddings: Mapping[str, torch.Tensor], meta: dict) -> Path:
    from safetensors.torch import save_file

    from ..safety import atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = sorted(embeddings)
    stacked = torch.stack([embeddings[i].float() for i in ids]).contiguous()
    partial = out / f".{EMBEDDINGS_FILE}.partial"
    save_file({"embeddings": stacked}, str(partial), metadata={"format": "pt"})
    os.replace(partial, out / EMBEDDINGS_FILE)
    index = {
        "version": CACHE_VERSION,
        **meta,
        "num_ids": len(ids),
        "clips_per_audio": int(stacked.shape[1]),
        "dim": int(stacked.shape[2]),
        "ids": ids,
    }
    atomic_write_text(out / INDEX_FILE, json.dumps(index, indent=1) + "\n")
    return out


class EmbeddingCache(Mapping):
    """A cache folder as ``id -> tensor [n_clips, D]`` (what ``MV4AllCollator`` expects)."""

    def __init__(self, folder: str | os.PathLike):
        from safetensors.torch import load_file

        self.folder = Path(folder)
        index_path = self.folder / INDEX_FILE
        if not index_path.is_file():
            raise FileNotFoundError(f"{folder} is not an embedding cache (no {INDEX_FILE}); run `mv4all embed`")
        self.index = json.loads(index_path.read_text(encoding="utf-8"))
        self.embeddings = load_file(str(self.folder / EMBEDDINGS_FILE))["embeddings"]
        self._rows = {row_id: i for i, row_id in enumerate(self.index["ids"])}

    @property
    def encoder_sha256(self) -> str | None:
        return self.index.get("encoder", {}).get("sha256")

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.embeddings[self._rows[key]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def check(self, model, encoder_sha256: str | None = None) -> None:
        """Refuse a cache that this model's encoder would not reproduce."""
        config = model.config
        problems = []
        if self.index.get("clips_per_audio") != config.clips_per_audio:
            problems.append(f"clips {self.index.get('clips_per_audio')} != model's {config.clips_per_audio}")
        if self.index.get("clip_sampler") != config.clip_sampler:
            problems.append(f"sampler {self.index.get('clip_sampler')!r} != model's {config.clip_sampler!r}")
        if encoder_sha256 is not None and self.encoder_sha256 != encoder_sha256:
            problems.append(f"encoder weights sha256 {self.encoder_sha256} != model's {encoder_sha256}")
        if problems:
            raise ValueError(f"embedding cache {self.folder} does not match the model: " + "; ".join(problems))


def resolve_encoder(name_or_path: str, encoder_path: str | None = None):
    """``(registry name, encoder)`` from a registry name (+ weights path) or a saved encoder folder."""
    from .encoders import AUDIO_ENCODERS, load_audio_encoder

    if name_or_path in AUDIO_ENCODERS:
        if encoder_path is None:
            raise ValueError(f"--encoder {name_or_path} needs --encoder-path (random weights are never cached)")
        return name_or_path, load_audio_encoder(name_or_path, encoder_path)
    folder = Path(name_or_path)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{name_or_path!r} is neither a registered encoder ({sorted(AUDIO_ENCODERS)}) nor a saved one")
    architectures = json.loads(config_file.read_text()).get("architectures") or []
    for key, spec in AUDIO_ENCODERS.items():
        if spec.cls.__name__ in architectures:
            return key, load_audio_encoder(key, folder)
    raise ValueError(f"{folder} holds {architectures}, which is not a registered audio encoder")


def build_embedding_cache(
    dataset: str | os.PathLike,
    audio_root: str | os.PathLike,
    encoder: str,
    out: str | os.PathLike,
    *,
    encoder_path: str | None = None,
    clips: int = 3,
    sampler: str = "imagebind",
    batch_size: int = 8,
    num_workers: int = 0,
    device: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """What ``mv4all embed`` does: encode every id of both configs once and write the cache."""
    from .run import weights_sha256

    name, model = resolve_encoder(encoder, encoder_path)
    model._mv4all_registry_name = name
    items = dataset_audio(dataset)
    embeddings = compute_embeddings(
        model, items, audio_root, clips, sampler, batch_size=batch_size, num_workers=num_workers,
        device=device, progress=progress,
    )
    source = encoder_path or encoder
    meta = {
        "encoder": {
            "name": name,
            "path": Path(str(source)).name if Path(str(source)).exists() else str(source),
            "sha256": weights_sha256(model),
        },
        "clip_sampler": sampler,
        "dataset": _build_id(dataset),
    }
    return save_embedding_cache(out, embeddings, meta)


def _build_id(dataset) -> dict:
    info = read_build_info(dataset)
    return {"build_id": info.get("build_id")} if info is not None else {"id": str(dataset)}
