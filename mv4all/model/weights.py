"""Where a run's base weights are, and proof that they are the ones it was trained with.

A run folder stores only what it trained; the frozen audio encoder and the base LLM are named in
``run.json`` by id or path plus a sha256. On another machine, or from the Hub, those files live
elsewhere, so each is looked up in this order:

1. an explicit option (``--audio-encoder`` / ``--base-model``, or the ``load_run`` argument);
2. the environment (``MV4ALL_AUDIO_ENCODER``, ``MV4ALL_BASE_MODEL``);
3. the user config (``$MV4ALL_CONFIG``, default ``~/.config/mv4all/config.yaml``)::

       audio_encoders: {imagebind: /data/imagebind_huge.pth}
       base_models: {lmsys/vicuna-7b-v1.5: /data/vicuna-7b-v1.5}

4. the location recorded in the run (a Hub id, or a path relative to the run folder).

When none of them holds the weights, ``MissingBaseWeights`` says which file or id is needed and
which option supplies it. The base LLM's identity is the sha256 of its weight files; hashing 13 GB
on every load would be slow, so file hashes are cached by (path, size, mtime), and a file in the
Hugging Face cache is named by its own sha256 already.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..safety import looks_like_hub_id

__all__ = [
    "ENCODER_ENV",
    "BASE_MODEL_ENV",
    "MissingBaseWeights",
    "Located",
    "file_sha256",
    "locate_audio_encoder",
    "looks_like_hub_id",
    "locate_base_model",
    "model_files_sha256",
    "user_config",
]

ENCODER_ENV = "MV4ALL_AUDIO_ENCODER"
BASE_MODEL_ENV = "MV4ALL_BASE_MODEL"
CONFIG_ENV = "MV4ALL_CONFIG"
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pth", "*.pt")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class MissingBaseWeights(FileNotFoundError):
    """The run needs base weights that are not where any source points."""


@dataclass(frozen=True)
class Located:
    """A resolved location and where the answer came from (for messages)."""

    value: str | None
    source: str  # "option" | "environment" | "user config" | "run"


# --------------------------------------------------------------------------- hashing


def _cache_file() -> Path:
    root = os.environ.get("MV4ALL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "mv4all")
    return Path(root) / "file_sha256.json"


def _read_cache() -> dict:
    try:
        return json.loads(_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_cache(cache: dict) -> None:
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=0, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a read-only home only costs a re-hash next time


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (cached by resolved path, size and mtime)."""
    real = Path(path).resolve()
    if real.parent.name == "blobs" and _HEX64.match(real.name):
        return real.name  # Hugging Face cache: an LFS blob is stored under its own sha256
    stat = real.stat()
    key = f"{real}|{stat.st_size}|{stat.st_mtime_ns}"
    cache = _read_cache()
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    with real.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    cache[key] = digest.hexdigest()
    _write_cache(cache)
    return cache[key]


def _model_folder(name_or_path: str, revision: str | None) -> Path | None:
    path = Path(name_or_path)
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_path, revision=revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the local cache: nothing to hash
        return None


def model_files_sha256(name_or_path: str | os.PathLike, revision: str | None = None) -> str | None:
    """One sha256 over a model's weight files (names and contents), independent of the dtype it loads in.

    ``None`` when no weight file can be found locally (nothing to verify against).
    """
    folder = _model_folder(str(name_or_path), revision)
    if folder is None:
        return None
    for pattern in WEIGHT_PATTERNS:
        files = sorted(p for p in folder.glob(pattern) if p.is_file())
        if files:
            digest = hashlib.sha256()
            for f in files:
                digest.update(f"{f.name}|{file_sha256(f)}\n".encode())
            return digest.hexdigest()
    return None


# --------------------------------------------------------------------------- locating


def user_config() -> dict:
    """The user's mv4all config (``$MV4ALL_CONFIG`` or ``~/.config/mv4all/config.yaml``), ``{}`` if none."""
    path = Path(os.environ.get(CONFIG_ENV) or Path.home() / ".config" / "mv4all" / "config.yaml")
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read the mv4all user config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"the mv4all user config {path} must be a mapping")
    return data


def _from_run(recorded: str | None, run_dir: Path, local: bool | None) -> str | None:
    """A recorded location as this machine sees it: relative paths start at the run folder."""
    if recorded is None:
        return None
    if Path(recorded).is_absolute():
        return recorded
    candidate = run_dir / recorded
    if candidate.exists():
        return str(candidate.resolve())
    if local is None:  # older runs: a Hub id has one slash and no dots at the start
        local = recorded.startswith(".") or recorded.count("/") != 1
    return str(candidate.absolute()) if local else recorded


def _locate(explicit, env_name, config_key, config_name, recorded, run_dir, local) -> Located:
    if explicit:
        return Located(str(explicit), "option")
    if os.environ.get(env_name):
        return Located(os.environ[env_name], "environment")
    mapping = user_config().get(config_key) or {}
    if isinstance(mapping, dict) and config_name in mapping:
        return Located(str(mapping[config_name]), "user config")
    return Located(_from_run(recorded, Path(run_dir), local), "run")


def locate_audio_encoder(info: dict, run_dir: str | os.PathLike, explicit: str | None = None) -> Located:
    """Where this run's frozen audio encoder weights are (see the module docstring for the order)."""
    enc = info.get("audio_encoder") or {}
    found = _locate(explicit, ENCODER_ENV, "audio_encoders", enc.get("name"), enc.get("path"), run_dir,
                    enc.get("local"))
    if found.value is not None and not _exists_or_hub(found.value):
        raise MissingBaseWeights(
            f"the {enc.get('name')} audio encoder weights ({enc.get('file') or Path(found.value).name}, "
            f"sha256 {str(enc.get('sha256'))[:12]}) are not at {found.value} (from the {found.source}): "
            f"pass --audio-encoder PATH (or set {ENCODER_ENV})")
    return found


def locate_base_model(info: dict, run_dir: str | os.PathLike, explicit: str | None = None) -> Located:
    """Where this run's base LLM is (see the module docstring for the order)."""
    base = info.get("base_model") or {}
    found = _locate(explicit, BASE_MODEL_ENV, "base_models", base.get("id"), base.get("id"), run_dir,
                    base.get("local"))
    if found.value is None:
        raise MissingBaseWeights(f"{run_dir}/run.json names no base model: pass --base-model PATH_OR_ID")
    if not _exists_or_hub(found.value):
        raise MissingBaseWeights(
            f"the base model {base.get('id')} is not at {found.value} (from the {found.source}): "
            f"pass --base-model PATH_OR_ID (or set {BASE_MODEL_ENV})")
    return found


def _exists_or_hub(value: str) -> bool:
    """A local path that exists, or something shaped like a Hub id that is not a path."""
    return Path(value).exists() or looks_like_hub_id(value)
