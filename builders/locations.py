"""Where the build keeps things: a local (or shared) folder, or an fsspec URL (``s3://``, ``gs://``,
``az://``, ``file://`` ...), behind one small set of calls.

A location is a plain string, so it travels inside a worker's job to any engine. Writes are whole
or absent: on a folder a file is written beside its target and renamed over it; on an object store
one upload is already seen whole or not at all, so it is written in place. Remote stores need their
fsspec package (``s3fs``, ``gcsfs``, ``adlfs``) and read their credentials from the environment of
the process that touches them, never from us.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

# fsspec protocols whose single upload is atomic and which have no rename worth the name
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "memory"})


class LocationError(ValueError):
    """A URL fsspec cannot open (unknown protocol, or its package is not installed)."""


class WorkDirUnreachable(RuntimeError):
    """The work dir could not be written: the build stops (a rerun resumes) instead of recording
    a clip as failed for good."""


def is_url(location: str | os.PathLike) -> bool:
    return "://" in str(location)


def join(root: str | os.PathLike, *parts: str) -> str:
    """``root/parts``: a path for a folder, a URL for a URL; parts are single safe names."""
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part:
            raise ValueError(f"unsafe name in a work-dir location: {part!r}")
    if is_url(root):
        return "/".join([str(root).rstrip("/"), *parts])
    return str(Path(root).joinpath(*parts))


def filesystem(url: str):
    """(fsspec filesystem, path inside it) of a URL."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:  # e.g. s3:// without s3fs installed
        raise LocationError(f"{url}: {exc}") from None


def check_url(url: str, what: str) -> None:
    """Refuse, before any work, a URL whose protocol fsspec does not know or cannot load."""
    import fsspec

    protocol = url.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:
        raise LocationError(f"{what} {url}: {exc}") from None


def atomic_puts(fs) -> bool:
    """True for object stores, where one upload is never seen half-written."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return bool(OBJECT_STORES & set(protocols))


def read_bytes(location: str | os.PathLike) -> bytes | None:
    """The file's bytes, or None when there is no such file."""
    if not is_url(location):
        try:
            return Path(location).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
    fs, path = filesystem(str(location))
    try:
        return fs.cat_file(path)
    except (FileNotFoundError, IsADirectoryError):
        return None


def write_bytes(location: str | os.PathLike, data: bytes) -> None:
    """Write the whole file, so that a reader sees the old file or the new one, never a part."""
    if not is_url(location):
        path = Path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return
    fs, path = filesystem(str(location))
    folder, name = path.rsplit("/", 1)
    if atomic_puts(fs):
        fs.pipe_file(path, data)
        return
    fs.makedirs(folder, exist_ok=True)
    temp = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
    fs.pipe_file(temp, data)
    try:
        fs.mv(temp, path)
    except BaseException:
        fs.rm(temp)
        raise


def write_many(files: dict[str, bytes]) -> None:
    """:func:`write_bytes` for many files; on an object store they are uploaded concurrently (one
    round trip each would cost a worker more than the clip's analysis)."""
    if not files:
        return
    first = next(iter(files))
    if is_url(first):
        fs, _ = filesystem(first)
        if atomic_puts(fs):
            fs.pipe({filesystem(loc)[1]: data for loc, data in files.items()})
            return
    for loc, data in files.items():
        write_bytes(loc, data)


def put_file(local: Path, location: str) -> None:
    """Upload one local file to a URL, whole or not at all (see :func:`write_bytes`)."""
    fs, path = filesystem(location)
    folder, name = path.rsplit("/", 1)
    fs.makedirs(folder, exist_ok=True)
    if atomic_puts(fs):
        fs.put_file(str(local), path)
        return
    temp = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
    fs.put_file(str(local), temp)
    fs.mv(temp, path)


def exists(location: str | os.PathLike) -> bool:
    if not is_url(location):
        return Path(location).exists()
    fs, path = filesystem(str(location))
    return fs.exists(path)


def remove(location: str | os.PathLike) -> None:
    """Delete a file if it is there."""
    if not is_url(location):
        Path(location).unlink(missing_ok=True)
        return
    fs, path = filesystem(str(location))
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


def names_in(folder: str | os.PathLike) -> list[str]:
    """The names of the files directly in a folder ([] when there is none)."""
    if not is_url(folder):
        try:
            return sorted(p.name for p in Path(folder).iterdir() if p.is_file())
        except (FileNotFoundError, NotADirectoryError):
            return []
    fs, path = filesystem(str(folder))
    fs.invalidate_cache(path)  # other processes write here too: never answer from a stale listing
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return []
    return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "file")


def read_many(locations: list[str]) -> dict[str, bytes]:
    """The bytes of many files of one URL store, fetched concurrently where the store allows it;
    missing files are left out."""
    if not locations:
        return {}
    fs, _ = filesystem(locations[0])
    paths = {filesystem(loc)[1]: loc for loc in locations}
    got = fs.cat(list(paths), on_error="omit")
    return {paths[p]: data for p, data in got.items() if p in paths}
