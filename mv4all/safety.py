"""The guards every command uses before it touches a user's files.

One rule per danger, in one place:

- **ownership**: mv4all writes only into a folder it created or can prove is its own: the folder
  holds ``.mv4all.json`` naming the kind of artefact (``dataset``, ``run``, ...). An empty or new
  folder is claimed; anything else is refused with a message naming the folder and ``--overwrite``.
  ``--overwrite`` lets mv4all claim a folder that has other files, never delete them.
- **atomic replacement**: an output is written beside its final name and renamed over it, so a
  crash leaves the old file or the new one, never half of either.
- **contained paths**: ids that become file names are checked, and every join under a root
  refuses to leave it.
- **one writer**: a lock file keeps two commands from writing one folder at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "MARKER",
    "UnsafeOutput",
    "atomic_write_text",
    "check_id",
    "claim_folder",
    "folder_lock",
    "inside",
    "looks_like_hub_id",
    "read_marker",
]

MARKER = ".mv4all.json"
LOCK = ".mv4all.lock"
# Music4All ids are 16 alphanumerics; other corpora use similar file-name-safe ids.
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class UnsafeOutput(ValueError):
    """Writing would touch something that is not mv4all's, or two writers would collide."""


# --------------------------------------------------------------------------- ids and paths


def check_id(clip_id: str) -> str:
    """``clip_id`` if it is safe as a file name (no separators, no ``..``); ``ValueError`` otherwise."""
    if not isinstance(clip_id, str) or not SAFE_ID.match(clip_id) or ".." in clip_id:
        raise ValueError(f"id {clip_id!r} is not a safe file name (letters, digits, '_', '-', '.'; "
                         "no path separators or '..')")
    return clip_id


def inside(root: str | os.PathLike, *parts: str | os.PathLike) -> Path:
    """``root / parts`` that is guaranteed to stay under ``root`` (symlinks resolved)."""
    base = Path(root).resolve()
    path = base.joinpath(*map(str, parts)).resolve()
    if path != base and base not in path.parents:
        raise ValueError(f"{Path(*map(str, parts))} leaves {root}")
    return path


def looks_like_hub_id(value: str) -> bool:
    """``name`` or ``org/name`` (a Hub repo id), as opposed to a local path: not absolute, not starting
    with ``.`` or ``~``, at most one slash."""
    return bool(value) and not (Path(value).is_absolute() or value.startswith((".", "~")) or value.count("/") > 1
                                or "\\" in value)


# --------------------------------------------------------------------------- ownership


def read_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(folder) / MARKER
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def claim_folder(folder: str | os.PathLike, kind: str, *, overwrite: bool = False,
                 legacy: tuple[str, ...] = (), option: str | None = "--overwrite") -> Path:
    """Make ``folder`` provably mv4all's ``kind`` artefact, or refuse.

    A folder that does not exist or is empty is created and marked. One marked as ``kind`` is
    ours already. ``legacy`` lists files that prove an older mv4all wrote a folder before markers
    existed (``build_info.json`` for a dataset). Anything else needs ``overwrite``. Also refuses a
    folder that cannot be written, before any work is done.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UnsafeOutput(f"{folder} is a file, not a folder: choose a folder for the {kind}")
    marker = read_marker(folder) if folder.is_dir() else None
    if marker is not None and marker.get("kind") != kind:
        raise UnsafeOutput(f"{folder} holds an mv4all {marker.get('kind')}, not a {kind}: choose another folder")
    if marker is None and folder.is_dir() and any(folder.iterdir()):
        ours = legacy and all((folder / name).exists() for name in legacy)
        if not (ours or overwrite):
            way_out = f", or pass {option} to write into it (nothing of yours is deleted)" if option else ""
            raise UnsafeOutput(f"{folder} is not empty and not an mv4all {kind} (no {MARKER}): choose a new or empty "
                               f"folder{way_out}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if marker is None:
            atomic_write_text(folder / MARKER, json.dumps({"kind": kind, "tool": "mv4all"}) + "\n")
        else:
            probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".mv4all-probe-", delete=True)
            probe.close()
    except OSError as exc:
        raise UnsafeOutput(f"cannot write into {folder}: {exc.strerror or exc}") from None
    return folder


# --------------------------------------------------------------------------- writing


def _file_mode(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` would give: the old file's when replacing, else 0o666 minus the umask.

    ``mkstemp`` creates its file 0600; renamed into place as it is, every dataset card, run record, script
    and page would be unreadable to the user's group and to a web server. (Nothing secret is ever written.)
    """
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        with _UMASK_LOCK:
            umask = os.umask(0)
            os.umask(umask)
        return 0o666 & ~umask


_UMASK_LOCK = threading.Lock()


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding=encoding) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` for ``what``; a second writer is refused at once."""
    import fcntl

    path = Path(folder) / LOCK
    handle = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UnsafeOutput(f"{folder} is in use by {holder}: wait for it to finish, or choose another folder") \
                from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{what} (pid {os.getpid()})")
        handle.flush()
        yield
    finally:
        handle.close()
