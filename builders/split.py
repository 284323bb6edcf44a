"""Deterministic train/test split by salted hash of a group key.

Why hashing: a clip's side depends only on its own group key and the salt, so adding or
removing a clip never moves another (in ratio mode). Rows of the same normalised
(artist, title) share a key, so duplicates and re-releases stay together; with
``by="artist"`` the key is the artist and the split has no artist overlap.

``min_test`` tops the test side up with the lowest-hash groups when the ratio gives
too few (tiny corpora); only then can a removal pull a replacement into test.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Literal

PAPER_TEST_RATIO = 1446 / 56446
DEFAULT_SALT = "mv4all-split-v1"

_FEAT_RE = re.compile(r"\s*[\(\[]?\s*\b(feat\.?|ft\.?|featuring|with)\b.*$", re.IGNORECASE)
_VERSION_RE = re.compile(
    r"\s*[\(\[\-–]\s*[^()\[\]]*\b(remaster(ed)?|live|version|edit|mix|remix|mono|stereo|acoustic|demo)\b[^()\[\]]*[\)\]]?\s*$",
    re.IGNORECASE,
)


def normalise(text: str) -> str:
    """Casefold, strip accents/punctuation and collapse spaces."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = re.sub(r"&", " and ", text)
    text = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def normalise_artist(artist: str) -> str:
    return normalise(_FEAT_RE.sub("", artist)) or normalise(artist)


def normalise_title(title: str) -> str:
    title = _FEAT_RE.sub("", title)
    for _ in range(2):
        title = _VERSION_RE.sub("", title)
    return normalise(title) or normalise(title)


def group_key(artist: str, song: str, by: Literal["song", "artist"] = "song") -> str:
    if by == "artist":
        return normalise_artist(artist)
    return f"{normalise_artist(artist)}\x1f{normalise_title(song)}"


def unit_hash(key: str, salt: str) -> float:
    """Uniform value in [0, 1) from a salted SHA-256."""
    digest = hashlib.sha256(f"{salt}\x1e{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class SplitSpec:
    test_ratio: float | None = None  # default: the paper's 1,446 / 56,446
    test_size: int | None = None  # exact-ish count; converted to a ratio over groups
    min_test: int = 4
    by: Literal["song", "artist"] = "song"
    salt: str = DEFAULT_SALT

    def ratio_for(self, n_groups: int) -> float:
        if self.test_size is not None and self.test_ratio is not None:
            raise ValueError("give either test_size or test_ratio, not both")
        if self.test_size is not None:
            if self.test_size < 0:
                raise ValueError("test_size must be >= 0")
            return min(1.0, self.test_size / max(1, n_groups))
        ratio = PAPER_TEST_RATIO if self.test_ratio is None else self.test_ratio
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"test_ratio must be in [0, 1), got {ratio}")
        return ratio


def assign_splits(rows: Iterable[tuple[str, str, str]], spec: SplitSpec = SplitSpec()) -> dict[str, str]:
    """Map clip id -> "train" | "test" for rows of (id, artist, song)."""
    rows = list(rows)
    keys = {cid: group_key(artist, song, spec.by) for cid, artist, song in rows}
    groups = sorted(set(keys.values()), key=lambda k: unit_hash(k, spec.salt))
    ratio = spec.ratio_for(len(groups))
    test_groups = {g for g in groups if unit_hash(g, spec.salt) < ratio}
    # Top up with the lowest-hash groups; keep at least one group for training.
    target = min(spec.min_test, max(0, len(rows) - 1))
    for g in groups:
        if sum(1 for k in keys.values() if k in test_groups) >= target:
            break
        if len(test_groups) >= len(groups) - 1:
            break
        test_groups.add(g)
    return {cid: ("test" if key in test_groups else "train") for cid, key in keys.items()}
