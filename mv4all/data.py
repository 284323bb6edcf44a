"""The dataset folder: parquet shards + README card with YAML ``configs:``, and Hub push.

A built folder loads with plain ``datasets.load_dataset(folder)`` (and ``"music_caption"``)
with no project code: the configs live in the card, the features in the parquet.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mv4all.schema import CONFIGS, dataset_features

ROWS_PER_SHARD = 10_000
DEFAULT_CONFIG = "mv_description"
# What a dataset repo receives; everything else in the folder (nothing, normally) stays local.
UPLOAD_GLOBS = ("README.md", "data/**/*.parquet", "failures.jsonl", "build_info.json")
TOKEN_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


BUILD_INFO_FILE = "build_info.json"


def read_build_info(dataset: str | os.PathLike) -> dict[str, Any] | None:
    """A local build folder's ``build_info.json`` (build id, stages, split), or ``None`` (Hub id, no build)."""
    path = Path(str(dataset)) / BUILD_INFO_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable build record: {exc}") from None
    return info if isinstance(info, dict) else None


def load_split(dataset: str | os.PathLike, config: str = DEFAULT_CONFIG, split: str = "test",
               columns: list[str] | tuple[str, ...] | None = None):
    """One split of a dataset config as a ``datasets.Dataset``: the one reader of a dataset folder.

    A local build folder is read straight from its parquet shards: ``load_dataset`` keys its cache
    on the folder name and the card's configs, so two builds both called ``out`` (or a rebuilt
    folder) could serve each other's rows. Hub ids go through ``load_dataset``. ``columns`` keeps
    those of the named columns that exist.
    """
    from datasets import Dataset, load_dataset

    from mv4all.safety import looks_like_hub_id

    folder = Path(str(dataset))
    if folder.is_dir() and (folder / "data").is_dir():
        import pyarrow as pa
        import pyarrow.parquet as pq
        from datasets.table import InMemoryTable

        files = sorted((folder / "data" / config).glob(f"{split}-*.parquet"))
        if not files:
            raise FileNotFoundError(f"{dataset} has no split {split!r} in config {config!r}")
        ds = Dataset(InMemoryTable(pa.concat_tables([pq.read_table(f) for f in files])))
    elif folder.is_dir() or not looks_like_hub_id(str(dataset)):
        raise FileNotFoundError(f"dataset folder not found (or not a built dataset): {dataset}")
    else:
        ds = load_dataset(str(dataset), config, split=split)
    if columns is not None:
        ds = ds.select_columns([c for c in columns if c in ds.column_names])
    return ds


def shard_name(split: str, index: int, total: int) -> str:
    return f"{split}-{index:05d}-of-{total:05d}.parquet"


SHARD_NAME = re.compile(r"^(train|test)-\d{5}-of-\d{5}\.parquet$")


def write_dataset(out: Path, rows: dict[str, dict[str, list[dict]]], *, failures: list[dict],
                  build_info: dict, card: str) -> None:
    """Replace ``out``'s dataset with ``rows`` (config -> split -> list of row dicts).

    ``out`` must already be claimed (``mv4all.safety.claim_folder``). A dataset with no rows is
    refused before anything is touched, since its card could not be loaded. New shards are written
    beside the old ones first; then the old shards are swapped out (only files named like our
    shards are ever removed), and the card is replaced last, atomically.
    """
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    from mv4all.safety import atomic_write_text

    out = Path(out)
    if not any(split_rows for splits in rows.values() for split_rows in splits.values()):
        raise ValueError(f"the build produced no dataset rows; {out} was left as it was")
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
    bars = is_progress_bar_enabled()
    disable_progress_bar()  # one bar per tiny shard is noise; the build shows its own progress
    try:
        _write_shards(staging, rows)
        _swap_shards(staging / "data", out / "data")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if bars:
            enable_progress_bar()
    atomic_write_text(out / "failures.jsonl", "".join(
        json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n" for record in failures))
    atomic_write_text(out / BUILD_INFO_FILE, json.dumps(build_info, indent=2, sort_keys=True, default=str) + "\n")
    atomic_write_text(out / "README.md", card)


def _swap_shards(new: Path, data: Path) -> None:
    """Move the new shards into ``data``, removing only old files that are our shards."""
    for config in CONFIGS:
        folder = data / config
        if folder.is_dir():
            for old in folder.iterdir():
                if old.is_file() and SHARD_NAME.match(old.name):
                    old.unlink()
        if (new / config).is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            for shard in sorted((new / config).iterdir()):
                os.replace(shard, folder / shard.name)


def _write_shards(out: Path, rows: dict[str, dict[str, list[dict]]]) -> None:
    from datasets import Dataset

    for config in CONFIGS:
        features = dataset_features(config)
        for split, split_rows in rows.get(config, {}).items():
            if not split_rows:
                continue
            folder = out / "data" / config
            folder.mkdir(parents=True, exist_ok=True)
            total = (len(split_rows) + ROWS_PER_SHARD - 1) // ROWS_PER_SHARD
            for i in range(total):
                part = split_rows[i * ROWS_PER_SHARD : (i + 1) * ROWS_PER_SHARD]
                Dataset.from_list(part, features=features).to_parquet(str(folder / shard_name(split, i, total)))


CONFIG_DESCRIPTIONS = {
    "mv_description": "music -> MV description (stage 2)",
    "music_caption": "music captioning (stage 1)",
}


def configs_yaml(rows: dict[str, dict[str, list]], build_id: str) -> list[dict[str, Any]]:
    """The card's ``configs:`` entries, one per config that has rows.

    The description names the build: ``datasets`` keys its local cache on the card's configs,
    not on the parquet contents, so without it a rebuilt folder loads the previous build.
    """
    out = []
    for config in CONFIGS:
        splits = [s for s in ("train", "test") if rows.get(config, {}).get(s)]
        if not splits:
            continue
        entry: dict[str, Any] = {"config_name": config,
                                 "description": f"mv4all build {build_id}: {CONFIG_DESCRIPTIONS[config]}"}
        if config == DEFAULT_CONFIG:
            entry["default"] = True
        entry["data_files"] = [{"split": s, "path": f"data/{config}/{s}-*.parquet"} for s in splits]
        out.append(entry)
    return out


def upload_files(folder: Path) -> list[str]:
    """Relative POSIX paths that ``push`` sends, sorted."""
    folder = Path(folder)
    found: set[str] = set()
    for pattern in UPLOAD_GLOBS:
        for path in folder.glob(pattern):
            if path.is_file():
                found.add(path.relative_to(folder).as_posix())
    return sorted(found)


def _hub_token() -> str | None:
    for name in TOKEN_ENV_VARS:
        if os.environ.get(name):
            return os.environ[name]
    return None


# Shapes of credentials that must never reach a public repo (checked in every uploaded file).
SECRET_SHAPES = {
    "an OpenAI-style API key": re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"),
    "a Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}"),
    "a GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
    "an AWS access key id": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}
SECRET_ENV = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD|ACCESS_KEY)$")


def known_secrets() -> list[str]:
    """Values of the environment's key-like variables and the token ``hf auth login`` saved."""
    values = [v for k, v in os.environ.items() if SECRET_ENV.search(k.upper()) and len(v) >= 8]
    try:
        from huggingface_hub import constants

        saved = Path(constants.HF_TOKEN_PATH)
        if saved.is_file():
            values.append(saved.read_text(encoding="utf-8").strip())
    except Exception:  # noqa: BLE001 - no saved login
        pass
    return [v for v in dict.fromkeys(values) if len(v) >= 8]


def _file_text(path: Path) -> str:
    """What a file says, for scanning: parquet decoded to JSON (its pages are compressed), others as text."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pandas().to_json()
    return path.read_text(encoding="utf-8", errors="replace")


def check_publishable(folder: Path, files: list[str], token: str | None = None) -> None:
    """Refuse to upload absolute paths, a token or anything shaped like a credential.

    Raises ValueError naming the offending file (never the secret itself).
    """
    folder = Path(folder).resolve()
    secrets = known_secrets() + ([token] if token else [])
    local = [str(folder), str(Path.home())]
    abs_path = re.compile(r'(?<![\w.:/])/(?:home|root|Users|tmp|work|mnt|var|data|srv|opt)/[^\s"\']+')
    for rel in files:
        text = _file_text(folder / rel)
        if any(secret in text for secret in secrets):
            raise ValueError(f"refusing to upload {rel}: it contains a secret (the value of an access token or key)")
        for what, shape in SECRET_SHAPES.items():
            if shape.search(text):
                raise ValueError(f"refusing to upload {rel}: it contains what looks like {what}")
        for needle in local:
            if needle and needle != "/" and needle in text:
                raise ValueError(f"refusing to upload {rel}: it contains a local path ({needle})")
        m = abs_path.search(text.replace("\\/", "/"))
        if m:
            raise ValueError(f"refusing to upload {rel}: it contains an absolute path ({m.group(0)[:60]})")


def push_folder(folder: Path, repo_id: str, *, repo_type: str = "dataset", private: bool = False,
                dry_run: bool = False, commit_message: str | None = None, files: list[str] | None = None,
                api=None) -> list[str]:
    """Create the repo (if needed) and upload ``files`` in one commit. Returns the file list.

    The token comes from ``HF_TOKEN`` (or the huggingface_hub login); it is never written.
    ``dry_run`` checks and lists without network.
    """
    folder = Path(folder)
    files = upload_files(folder) if files is None else files
    if not files:
        raise ValueError(f"nothing to upload in {folder}")
    token = _hub_token()
    check_publishable(folder, files, token)
    if dry_run:
        return files
    from huggingface_hub import CommitOperationAdd, HfApi

    api = api or HfApi(token=token)
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel)) for rel in files]
    api.create_commit(repo_id=repo_id, repo_type=repo_type, operations=operations,
                      commit_message=commit_message or f"Upload {repo_type} with mv4all")
    return files
