"""Reader for the real Music4All layout (tab-separated CSVs with header rows).

Music4All is read as strings with no NA conversion, then numbers are parsed here so
that a bad value becomes a per-clip failure with its reason instead of a crash.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from mv4all.safety import check_id, inside
from mv4all.schema import FailureRecord, Track

CSV_FILES = {
    "information": "id_information.csv",
    "metadata": "id_metadata.csv",
    "genres": "id_genres.csv",
    "tags": "id_tags.csv",
    "lang": "id_lang.csv",
}
METADATA_NUMBERS = ("popularity", "danceability", "energy", "key", "mode", "valence", "tempo", "duration_ms")


class Music4AllError(ValueError):
    """The corpus folder itself is unusable (missing required CSV, wrong header)."""


def read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A Music4All CSV: tab-separated, header row, every value a string, no quoting."""
    with path.open(newline="", encoding="utf-8-sig") as f:  # a UTF-8 BOM (spreadsheet exports) is not a column
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise Music4AllError(f"{path} is empty (expected a header row)") from None
        rows = []
        for values in reader:
            if not values or all(not v.strip() for v in values):
                continue
            values = values + [""] * (len(header) - len(values))
            rows.append(dict(zip(header, values)))
    return header, rows


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _number(value: str, column: str) -> float | None:
    text = value.strip()
    if text == "" or text.lower() in {"nan", "na", "n/a", "none", "null"}:
        return None
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"bad number in id_metadata.csv column {column!r}: {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"bad number in id_metadata.csv column {column!r}: {value!r}")
    return number


@dataclass
class Corpus:
    root: Path
    tracks: dict[str, Track]
    failures: list[FailureRecord] = field(default_factory=list)

    def audio_relpath(self, clip_id: str) -> str:
        return f"audios/{clip_id}.mp3"

    def audio_path(self, clip_id: str) -> Path:
        return inside(self.root, "audios", f"{check_id(clip_id)}.mp3")

    def lyrics_path(self, clip_id: str) -> Path:
        return inside(self.root, "lyrics", f"{check_id(clip_id)}.txt")

    def read_lyrics(self, clip_id: str) -> str | None:
        """The lyrics text, or None when the file is missing."""
        path = self.lyrics_path(clip_id)
        if not path.is_file():
            return None
        return path.read_text(encoding="utf-8", errors="replace")


def read_music4all(root: Path, ids: list[str] | None = None) -> Corpus:
    """Read the CSVs under ``root``; per-track problems become ``FailureRecord``s."""
    root = Path(root)
    if not root.is_dir():
        raise Music4AllError(f"Music4All folder not found: {root}")
    tables: dict[str, dict[str, dict[str, str]]] = {}
    for name, filename in CSV_FILES.items():
        path = root / filename
        if not path.is_file():
            if name in ("information", "metadata"):
                raise Music4AllError(f"missing {filename} in {root}")
            tables[name] = {}
            continue
        header, rows = read_table(path)
        if "id" not in header:
            raise Music4AllError(f"{path} has no 'id' column in its header row: {header}")
        tables[name] = {r["id"].strip(): r for r in rows}

    wanted = list(tables["information"]) if ids is None else list(ids)
    tracks: dict[str, Track] = {}
    failures: list[FailureRecord] = []
    for cid in wanted:
        try:
            check_id(cid)
        except ValueError as exc:
            failures.append(FailureRecord(id=cid, stage="ingest", reason=str(exc)))
            continue
        info = tables["information"].get(cid)
        if info is None:
            failures.append(FailureRecord(id=cid, stage="ingest", reason="id not in id_information.csv"))
            continue
        meta = tables["metadata"].get(cid)
        if meta is None:
            failures.append(FailureRecord(id=cid, stage="ingest", reason="missing metadata row in id_metadata.csv"))
            continue
        try:
            numbers = {col: _number(meta.get(col, ""), col) for col in METADATA_NUMBERS}
        except ValueError as exc:
            failures.append(FailureRecord(id=cid, stage="ingest", reason=str(exc)))
            continue
        if numbers["tempo"] is not None and numbers["tempo"] <= 0:
            numbers["tempo"] = None  # Music4All writes 0 for unknown tempo
        for col in ("key", "mode"):
            if numbers[col] is not None:
                numbers[col] = int(numbers[col])
        tracks[cid] = Track(
            id=cid,
            artist=info.get("artist", "").strip(),
            song=info.get("song", "").strip(),
            album_name=info.get("album_name", "").strip(),
            spotify_id=meta.get("spotify_id", "").strip(),
            release=meta.get("release", "").strip(),
            genres=_split_list(tables["genres"].get(cid, {}).get("genres", "")),
            tags=_split_list(tables["tags"].get(cid, {}).get("tags", "")),
            lang=tables["lang"].get(cid, {}).get("lang", "").strip(),
            **numbers,
        )
    return Corpus(root=root, tracks=tracks, failures=failures)


def write_table(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Write a CSV the way Music4All ships them (tabs, header row, no quoting)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(str(v).replace("\t", " ").replace("\n", " ") for v in row) + "\n")
