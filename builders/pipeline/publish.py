"""``--out`` as an fsspec URL (``s3://``, ``gs://``, ``az://``, ``file://`` ...): the dataset folder is
written in the work dir as for a local ``--out``, then uploaded.

The stores' semantics decide the order: every object store makes one upload visible whole or not at
all, so no parquet file is ever seen half-written; on a filesystem each file is uploaded beside its
target and renamed. ``build_info.json`` goes last, so a dataset whose build info names this build is
complete; shards of an earlier build that this one did not write are removed just before it. The
folder is claimed as on a local disk: a non-empty one that is not an mv4all dataset is refused unless
``--overwrite``, and nothing but our own shards is ever deleted.
"""

from __future__ import annotations

from pathlib import Path

from builders.locations import LocationError, filesystem, is_url, put_file
from mv4all.data import BUILD_INFO_FILE, SHARD_NAME
from mv4all.safety import LOCK, MARKER, UnsafeOutput
from mv4all.schema import CONFIGS

__all__ = ["check_remote", "is_url", "upload_dataset"]


def _fs(url: str):
    try:
        fs, root = filesystem(url)
    except LocationError as exc:
        raise UnsafeOutput(f"--out {exc}") from None
    return fs, root.rstrip("/")


def check_remote(url: str, overwrite: bool) -> None:
    """Refuse a remote folder that holds something other than an mv4all dataset (before any work)."""
    fs, root = _fs(url)
    if not fs.exists(root):
        return
    if not fs.isdir(root):
        raise UnsafeOutput(f"{url} is a file, not a folder: choose a folder for the dataset")
    names = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)}
    if names and not ({MARKER, BUILD_INFO_FILE} & names) and not overwrite:
        raise UnsafeOutput(f"{url} is not empty and not an mv4all dataset (no {MARKER}): choose a new or empty "
                           "folder, or pass --overwrite to write into it (nothing of yours is deleted)")


def upload_dataset(local: Path, url: str) -> int:
    """Upload the dataset folder ``local`` to ``url``; return the number of files sent."""
    fs, root = _fs(url)
    # not the local writer's lock (it names a local folder and a pid), nor a half-written staging copy
    files = sorted(p for p in Path(local).rglob("*")
                   if p.is_file() and p.name != LOCK and not any(part.startswith(".staging") for part in p.parts))
    last = [p for p in files if p.name == BUILD_INFO_FILE and p.parent == Path(local)]
    first = [p for p in files if p not in last]
    sent: set[str] = set()
    for path in [*first, *last]:
        rel = path.relative_to(local).as_posix()
        if path.parent == Path(local) and path.name == BUILD_INFO_FILE:
            _remove_stale_shards(fs, root, sent)
        put_file(path, f"{url.rstrip('/')}/{rel}")
        sent.add(rel)
    return len(sent)


def _remove_stale_shards(fs, root: str, sent: set[str]) -> None:
    """Shards an earlier build left that this one did not write (only files named like our shards)."""
    for config in CONFIGS:
        folder = f"{root}/data/{config}"
        if not fs.exists(folder):
            continue
        for remote in fs.ls(folder, detail=False):
            name = remote.rstrip("/").rsplit("/", 1)[-1]
            if SHARD_NAME.match(name) and f"data/{config}/{name}" not in sent:
                fs.rm(remote)
