"""The dataset folder: parquet shards + README card with YAML ``configs:``, and Hub push.

A built folder loads with plain ``datasets.load_dataset(folder)`` (and ``"music_caption"``)
with no project code: the configs live in the card, the features in the parquet.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from mv4all.schema import CONFIGS, dataset_features

ROWS_PER_SHARD = 10_000
DEFAULT_CONFIG = "mv_description"
# What a dataset repo receives; everything else in the folder (nothing, normally) stays local.
UPLOAD_GLOBS = ("README.md", "data/**/*.parquet", "failures.jsonl", "build_info.json")
TOKEN_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def shard_name(split: str, index: int, total: int) -> str:
    return f"{split}-{index:05d}-of-{total:05d}.parquet"


def write_dataset(out: Path, rows: dict[str, dict[str, list[dict]]], *, failures: list[dict],
                  build_info: dict, card: str) -> None:
    """Replace ``out``'s data with ``rows`` (config -> split -> list of row dicts)."""
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    out = Path(out)
    bars = is_progress_bar_enabled()
    disable_progress_bar()  # one bar per tiny shard is noise; the build shows its own progress
    try:
        _write_shards(out, rows)
    finally:
        if bars:
            enable_progress_bar()
    with (out / "failures.jsonl").open("w", encoding="utf-8") as f:
        for record in failures:
            f.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
    (out / "build_info.json").write_text(json.dumps(build_info, indent=2, sort_keys=True, default=str) + "\n")
    (out / "README.md").write_text(card, encoding="utf-8")


def _write_shards(out: Path, rows: dict[str, dict[str, list[dict]]]) -> None:
    from datasets import Dataset

    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "data", ignore_errors=True)
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


def check_publishable(folder: Path, files: list[str], token: str | None = None) -> None:
    """Refuse to upload absolute paths or a token. Raises ValueError with the offending file."""
    folder = Path(folder).resolve()
    needles = [str(folder), str(Path.home())] + ([token] if token else [])
    abs_path = re.compile(r'(?<![\w.:/])/(?:home|root|Users|tmp|work|mnt|var|data|srv|opt)/[^\s"\']+')
    for rel in files:
        path = folder / rel
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            text = pq.read_table(path).to_pandas().to_json()
        else:
            text = path.read_text(encoding="utf-8", errors="replace")
        for needle in needles:
            if needle and needle != "/" and needle in text:
                what = "an access token" if needle == token else f"a local path ({needle})"
                raise ValueError(f"refusing to upload {rel}: it contains {what}")
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
