"""The storyboard page: one self-contained HTML file to look at an MV plan (or a dataset row) with the song.

Two sources, one page (``mv4all/templates/storyboard.html``):

- a whole-song script (``SongScript``, from ``mv4all describe --whole-song``): song facts, the overview, a timeline
  of sections, downbeats, chords and shots, and a card per shot with its times and text;
- a dataset row (``mv_description`` config): the gold MV's sampled frames next to the frame-by-frame breakdown
  and the frame captions, with the measured music features, so a reader can judge the targets with their own eyes.

The page never touches the network: style, script, frame thumbnails (JPEG ``data:`` URIs) and the audio (a
``data:`` URI up to a size limit, else a path relative to the page, said on the page) are inline, and a
Content-Security-Policy forbids every other source. Every text is HTML-escaped: descriptions come from models.
Clicking a card (or the timeline) seeks the audio; plain inline JS, no library.
"""

from __future__ import annotations

import base64
import html
import importlib.resources
import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mv4all.schema import CLIP_SECONDS, FRAME_STEP_SECONDS, SCHEMA_VERSION, SongScript

TEMPLATE = "storyboard.html"  # package data: mv4all/templates/
DEFAULT_MAX_AUDIO_MB = 20.0  # larger audio is referred to by relative path, not embedded
THUMB_SIDE = 360  # longest side of an embedded frame thumbnail
THUMB_QUALITY = 80
# Same label, same colour: sections that sound alike look alike.
PALETTE = ("#9cc3f5", "#f7b58d", "#a6dba0", "#f29fb5", "#cdb4f0", "#f5d77a", "#8fd8d2", "#d6c3a5", "#b8c2d6",
           "#f0a6e0")
AUDIO_TYPES = {".mp3": "audio/mpeg", ".wav": "audio/wav", ".ogg": "audio/ogg", ".oga": "audio/ogg",
               ".opus": "audio/ogg", ".flac": "audio/flac", ".m4a": "audio/mp4", ".aac": "audio/aac",
               ".mp4": "audio/mp4", ".webm": "audio/webm"}
FRAME_GLOB = "[0-9][0-9].jpg"  # the builder's sampled frames: frames_dir/{i:02d}.jpg


@dataclass
class Audio:
    """The page's ``<audio>`` source: a ``data:`` URI, or a path relative to the page (``embedded`` False)."""

    src: str
    embedded: bool
    note: str = ""


@dataclass
class Card:
    start: float
    end: float
    section: str = ""
    title: str = ""
    text: str = ""
    image: str | None = None  # a data: URI (the gold MV's sampled frame)
    caption: str = ""  # the frame caption (dataset rows)


@dataclass
class Page:
    """Everything the template shows; built by ``page_from_script`` / ``page_from_row``, drawn by ``render``."""

    title: str
    duration: float
    subtitle: str = ""
    chips: list[tuple[str, str]] = field(default_factory=list)  # (label, value)
    overview: list[str] = field(default_factory=list)  # paragraphs
    sections: list[tuple[float, float, str]] = field(default_factory=list)
    downbeats: list[float] = field(default_factory=list)
    beats: list[float] = field(default_factory=list)  # all beats (dataset rows); downbeats are drawn stronger
    chords: list[tuple[float, float, str]] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    cards_heading: str = "Shots"
    audio: Audio | None = None
    audio_hint: str = ""  # shown when there is no audio
    notes: list[str] = field(default_factory=list)
    features: list[tuple[str, str]] = field(default_factory=list)
    chroma: list[float] | None = None
    texts: list[tuple[str, str]] = field(default_factory=list)  # (heading, text)
    footer: str = ""


# --------------------------------------------------------------------------- small helpers


def clock(t: float) -> str:
    """``m:ss.s``."""
    t = max(0.0, float(t))
    return f"{int(t // 60)}:{t % 60:04.1f}"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _pct(t: float, duration: float) -> float:
    return round(100.0 * min(max(t, 0.0), duration) / duration, 4) if duration > 0 else 0.0


def section_colours(labels: list[str]) -> dict[str, str]:
    """A colour per distinct label, in order of first appearance."""
    out: dict[str, str] = {}
    for label in labels:
        if label not in out:
            out[label] = PALETTE[len(out) % len(PALETTE)]
    return out


def jpeg_data_uri(data: bytes, side: int = THUMB_SIDE, quality: int = THUMB_QUALITY) -> str:
    """A JPEG (or any image OpenCV reads) as a small JPEG ``data:`` URI, its longest side at most ``side``."""
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a readable image")
    return _encode(image, side, quality)


def _encode(bgr, side: int = THUMB_SIDE, quality: int = THUMB_QUALITY) -> str:
    import cv2

    h, w = bgr.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale < 1.0:
        bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def audio_source(path: str | os.PathLike, page: str | os.PathLike,
                 max_mb: float = DEFAULT_MAX_AUDIO_MB) -> Audio:
    """``path`` embedded as a ``data:`` URI when at most ``max_mb``; else referred to relative to ``page``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    size = path.stat().st_size
    mime = AUDIO_TYPES.get(path.suffix.lower(), "audio/mpeg")
    if size <= max_mb * 1024 * 1024:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return Audio(f"data:{mime};base64,{data}", True, f"{path.name} embedded in the page ({size / 1e6:.1f} MB)")
    rel = os.path.relpath(path.resolve(), Path(page).resolve().parent)
    return Audio(urllib.parse.quote(Path(rel).as_posix()), False,
                 f"{path.name} is {size / 1e6:.1f} MB, over the {max_mb:g} MB embedding limit: the page plays it "
                 f"from {Path(rel).as_posix()} (relative to the page), so keep the two together")


# --------------------------------------------------------------------------- sources


def page_from_script(script: SongScript) -> Page:
    """The page of a whole-song MV script."""
    f = script.facts
    chips = [("length", clock(f.duration)), ("tempo", f"{f.tempo:.0f} BPM"), ("key", f.key)]
    if f.beats_per_bar:
        chips.append(("metre", f"{f.beats_per_bar}/4"))
    if script.mv_type:
        chips.append(("MV type", script.mv_type))
    if script.genres:
        chips.append(("genres", ", ".join(script.genres)))
    chips += [("sections", str(len(script.sections))), ("shots", str(len(script.shots)))]
    texts = [("Lyrics understanding", script.lyrics_understanding)] if script.lyrics_understanding.strip() else []
    windows = ", ".join(f"{clock(w.start)}-{clock(w.end)} ({w.section})" for w in script.windows)
    features = [("downbeats", str(len(f.downbeats))), ("chords", str(len(f.chords)))]
    if windows:
        features.append(("model windows", windows))
    return Page(
        title=script.source, duration=max(f.duration, max((s.end for s in script.shots), default=0.0)),
        subtitle="MV script" + (f" by {script.model}" if script.model else ""),
        chips=chips, overview=_paragraphs(script.overview),
        sections=[(s.start, s.end, s.label) for s in script.sections],
        downbeats=list(f.downbeats), chords=[(c.start, c.end, c.label) for c in f.chords],
        cards=[Card(s.start, s.end, s.section, s.title, s.text) for s in script.shots],
        audio_hint=f"No audio: give --audio {script.source} to play the song with the storyboard.",
        features=features, texts=texts,
        footer=f"mv4all storyboard · script contract {script.schema_version}")


def page_from_row(row: dict, frames: list[str] | None = None, frames_note: str = "") -> Page:
    """The page of a dataset row (``mv_description`` config): ``frames`` are the gold MV's sampled frames as
    data URIs (or ``None``: the frame captions are shown alone, and ``frames_note`` says why)."""
    mf = row.get("music_features") or {}
    desc = row.get("mv_description") or {}
    beats = desc.get("beats") or []
    captions = row.get("frame_captions") or []
    duration = float(mf.get("duration") or CLIP_SECONDS)
    n = max(len(beats), len(captions), len(frames or []))
    starts = [float(captions[i]["t"]) if i < len(captions) else i * FRAME_STEP_SECONDS for i in range(n)]
    cards = []
    for i in range(n):
        end = starts[i + 1] if i + 1 < n else max(duration, starts[i] + FRAME_STEP_SECONDS)
        beat = beats[i] if i < len(beats) else {}
        cards.append(Card(starts[i], end, title=beat.get("title", ""),
                          text=beat.get("text", "") if beat else "(no breakdown beat for this frame)",
                          image=frames[i] if frames and i < len(frames) else None,
                          caption=captions[i]["caption"] if i < len(captions) else ""))
    notes = []
    if frames is None:
        notes.append(frames_note or "The gold MV's frames were not found: showing the frame captions only.")
    elif len(frames) != n:
        notes.append(f"{len(frames)} frames for {n} breakdown beats: cards are matched by position.")
    if captions and beats and len(captions) != len(beats):
        notes.append(f"{len(captions)} frame captions for {len(beats)} breakdown beats.")

    chips = [("length", clock(duration)), ("tempo", f"{float(mf.get('tempo') or 0):.0f} BPM")]
    key = mf.get("key") or "unknown"
    if mf.get("key_confidence") is not None and key != "unknown":
        key += f" ({float(mf['key_confidence']):.2f})"
    chips.append(("key", key))
    if mf.get("beats_per_bar"):
        chips.append(("metre", f"{mf['beats_per_bar']}/4"))
    if row.get("mv_type"):
        chips.append(("MV type", row["mv_type"]))
    if row.get("genres"):
        chips.append(("genres", ", ".join(row["genres"])))
    chips.append(("frames", str(len(frames)) if frames is not None else "not found"))

    features = [(name, _num(mf.get(name))) for name in ("tempo_strength", "energy", "valence", "danceability")
                if mf.get(name) is not None]
    if row.get("static_score") is not None:
        features.append(("static score (frame motion)", _num(row["static_score"])))
    if row.get("tags"):
        features.append(("tags", ", ".join(row["tags"])))
    lib = mf.get("librosa") or {}
    features += [(name.replace("_", " "), _num(value)) for name, value in lib.items()
                 if name != "chroma_mean" and value is not None]
    features.append(("beats / downbeats / chords",
                     " / ".join(str(len(mf.get(name) or [])) for name in ("beats", "downbeats", "chords"))))
    texts = [(heading, row[name]) for heading, name in (
        ("Music caption", "music_caption"), ("Unified music caption", "unified_music_caption"),
        ("Lyrics understanding", "lyrics_understanding")) if str(row.get(name) or "").strip()]
    overview = _paragraphs(desc.get("overview", ""))
    if str(desc.get("closing") or "").strip():
        overview += _paragraphs(desc["closing"])
    return Page(
        title=f"{row.get('artist', '')} — {row.get('song', '')}".strip(" —") or str(row.get("id", "")),
        subtitle=f"dataset row {row.get('id', '')} · the gold MV's sampled frames next to its target description",
        duration=duration, chips=chips, overview=overview,
        beats=[float(b["time"]) for b in mf.get("beats") or []],
        downbeats=[float(t) for t in mf.get("downbeats") or []],
        chords=[(float(c["start"]), float(c["end"]), c["label"]) for c in mf.get("chords") or []],
        cards=cards, cards_heading="Frame-by-frame breakdown", notes=notes, features=features,
        chroma=list(lib.get("chroma_mean") or []) or None, texts=texts,
        audio_hint="No audio: give --audio-root (the Music4All folder) or --audio to play the clip.",
        footer=f"mv4all storyboard · dataset row contract {(row.get('provenance') or {}).get('schema_version', '?')}")


def _num(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in str(text or "").split("\n\n") if p.strip()]


# --------------------------------------------------------------------------- dataset rows and their frames


def load_row(dataset: str | os.PathLike, clip_id: str) -> tuple[dict, str]:
    """The ``mv_description`` row ``clip_id`` of a built dataset and its split (train or test).

    ``KeyError`` names the id, and says why when ``failures.jsonl`` knows (a dropped static MV, say)."""
    from mv4all.data import load_split

    for split in ("train", "test"):
        try:
            ds = load_split(dataset, "mv_description", split)
        except FileNotFoundError:
            continue
        ids = ds["id"]
        if clip_id in ids:
            return dict(ds[ids.index(clip_id)]), split
    why = ""
    failures = Path(str(dataset)) / "failures.jsonl"
    if failures.is_file():
        for line in failures.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("id") == clip_id:
                why = f" (failures.jsonl: {record.get('kind')} at {record.get('stage')}: {record.get('reason')})"
                break
    raise KeyError(f"id {clip_id!r} is not a row of {dataset}'s mv_description config{why}")


def _frame_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(FRAME_GLOB)) if folder.is_dir() else []


def find_frames(dataset: str | os.PathLike, clip_id: str, *, frames: str | os.PathLike | None = None,
                work: str | os.PathLike | None = None) -> tuple[list[Path], str]:
    """The builder's sampled frame JPEGs of ``clip_id`` (``<work>/frames/<frames stage key>/<id>/NN.jpg``),
    and where they were looked for (for the page's note when none is found).

    ``frames`` may be the clip's own folder, a folder of per-id folders, or the work dir's ``frames/``.
    Without it the work dir is ``work`` or, as the builder and the demo lay it out, ``DATASET.work`` or
    ``work/`` beside the dataset; the stage key comes from the dataset's ``build_info.json`` (exact
    frame options), else the newest stored key holding the clip.
    """
    from mv4all.data import read_build_info
    from mv4all.safety import check_id

    check_id(clip_id)
    if frames is not None:
        root = Path(frames)
        for candidate in (root / clip_id, root, *sorted(root.glob(f"*/{clip_id}"))):
            files = _frame_files(candidate)
            if files:
                return files, str(candidate)
        return [], f"--frames {root}"
    info = read_build_info(dataset) or {}
    key = (info.get("stage_keys") or {}).get("frames")
    folder = Path(str(dataset))
    works = [Path(work)] if work is not None else [Path(str(folder) + ".work"), folder.parent / "work"]
    looked = []
    for w in works:
        if key:
            files = _frame_files(w / "frames" / key / clip_id)
            looked.append(str(w / "frames" / key / clip_id))
        else:
            stored = sorted(w.glob(f"frames/*/{clip_id}"), key=lambda p: p.stat().st_mtime, reverse=True)
            files = next((fs for fs in map(_frame_files, stored) if fs), [])
            looked.append(str(w / "frames" / "*" / clip_id))
        if files:
            return files, str(files[0].parent)
    return [], " or ".join(looked)


def frames_at_url(dataset: str | os.PathLike, clip_id: str, work_url: str) -> tuple[list[bytes], str]:
    """The builder's frame JPEGs of ``clip_id`` in a work dir at an fsspec URL (``--work-dir s3://...``),
    under the frames stage key of the dataset's ``build_info.json``; and where they were looked for."""
    import fsspec

    from mv4all.data import read_build_info
    from mv4all.safety import check_id

    check_id(clip_id)
    key = ((read_build_info(dataset) or {}).get("stage_keys") or {}).get("frames")
    if not key:
        return [], f"{work_url} (no frames stage key in {dataset}/build_info.json)"
    folder = f"{work_url.rstrip('/')}/frames/{key}/{clip_id}"
    try:
        fs, path = fsspec.core.url_to_fs(folder)
        names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
    except FileNotFoundError:
        return [], folder
    except (ImportError, ValueError) as exc:
        raise ValueError(f"--work {work_url}: {exc}") from None
    wanted = [n for n in names if len(n) == 6 and n.endswith(".jpg") and n[:2].isdigit()]
    return [fs.cat_file(f"{path}/{n}") for n in wanted], folder


def decode_video_frames(video: str | os.PathLike, *, every: float = FRAME_STEP_SECONDS, clip_start: float = 0.0,
                        clip_seconds: float = CLIP_SECONDS, side: int = THUMB_SIDE) -> list[str]:
    """The frames shown at ``clip_start + i * every`` (the builder's sampling) of a video, as JPEG data URIs.

    PyAV decodes the video once, from the start; a video shorter than the clip repeats its last frame.
    ``ValueError`` for an unreadable video."""
    import av
    import cv2

    path = Path(video)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    n = max(1, int(round(clip_seconds / every)))
    targets = [clip_start + i * every for i in range(n)]
    out: list[str] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            shown = None  # the frame on screen before the current one
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else 0.0
                while len(out) < n and t > targets[len(out)] + 1e-6:
                    out.append(_frame_uri(shown if shown is not None else frame, side, cv2))
                if len(out) >= n:
                    break
                shown = frame
            if shown is not None:
                while len(out) < n:
                    out.append(_frame_uri(shown, side, cv2))
    except av.FFmpegError as exc:
        raise ValueError(f"{path}: cannot decode the video ({exc})") from None
    if not out:
        raise ValueError(f"{path}: no video frames")
    return out


def _frame_uri(frame, side: int, cv2) -> str:
    return _encode(cv2.cvtColor(frame.to_ndarray(format="rgb24"), cv2.COLOR_RGB2BGR), side)


# --------------------------------------------------------------------------- drawing


def render(page: Page) -> str:
    """The page as one self-contained HTML document."""
    template = (importlib.resources.files("mv4all") / "templates" / TEMPLATE).read_text(encoding="utf-8")
    d = page.duration if page.duration > 0 else 1.0
    colours = section_colours([s[2] for s in page.sections] + [c.section for c in page.cards if c.section])
    media = "data:" if page.audio is None or page.audio.embedded else "data: 'self' file:"
    values = {
        "csp": f"default-src 'none'; img-src data:; media-src {media}; style-src 'unsafe-inline'; "
               "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
        "schema_version": _e(SCHEMA_VERSION),
        "title": _e(page.title),
        "subtitle": _e(page.subtitle),
        "chips": "".join(f"<li>{_e(k)} <b>{_e(v)}</b></li>" for k, v in page.chips),
        "notes": ('<div class="notes">' + "".join(f"<p>{_e(n)}</p>" for n in page.notes) + "</div>"
                  if page.notes else ""),
        "player": _player(page),
        "overview": "".join(f"<p>{_e(p)}</p>" for p in page.overview) or "<p>(no overview)</p>",
        "duration": f"{d:.3f}",
        "lanes": _lanes(page, d, colours),
        "legend": _legend(page, colours),
        "cards_heading": _e(f"{page.cards_heading} ({len(page.cards)})"),
        "cards": "\n".join(_card(i, c, colours) for i, c in enumerate(page.cards, start=1)),
        "extra": _extra(page),
        "footer": _e(page.footer),
    }
    # one pass: a value (model text, escaped but with braces intact) is never scanned for placeholders again
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], template)


def _player(page: Page) -> str:
    if page.audio is None:
        return f'<p class="note">{_e(page.audio_hint or "No audio.")}</p>'
    return (f'<audio id="song" controls preload="auto" src="{_e(page.audio.src)}"></audio>'
            f'<p class="note">{_e(page.audio.note)} · click a card or the timeline to jump there</p>')


def _lanes(page: Page, d: float, colours: dict[str, str]) -> str:
    def seg(start: float, end: float, cls: str, label: str, tip: str, style: str = "") -> str:
        left, width = _pct(start, d), max(0.0, _pct(end, d) - _pct(start, d))
        shown = _e(label) if width >= 2.2 else ""
        return (f'<div class="seg {cls}" style="left:{left}%;width:{width}%;{style}" '
                f'title="{_e(tip)}">{shown}</div>')

    def lane(name: str, body: str, small: bool = False) -> str:
        return (f'<div class="lane"><span class="name">{_e(name)}</span>'
                f'<div class="track{" small" if small else ""}">{body}</div></div>')

    lanes = []
    if page.sections:
        lanes.append(lane("sections", "".join(
            seg(s, e, "section", label, f"section {label}: {clock(s)}-{clock(e)}", f"background:{colours[label]}")
            for s, e, label in page.sections)))
    lanes.append(lane("shots" if page.sections else "frames", "".join(
        seg(c.start, c.end, "shotseg", str(i), f"{i}. {clock(c.start)}-{clock(c.end)} {c.title}".strip())
        for i, c in enumerate(page.cards, start=1))))
    downs = {round(t, 3) for t in page.downbeats}
    ticks = [f'<div class="tick" style="left:{_pct(t, d)}%"></div>' for t in page.beats if round(t, 3) not in downs]
    ticks += [f'<div class="tick down" style="left:{_pct(t, d)}%"></div>' for t in page.downbeats]
    lanes.append(lane("beats" if page.beats else "downbeats", "".join(ticks), small=True))
    if page.chords:
        def chord_cls(label: str) -> str:
            return "none" if label in ("N", "X", "") else ("min" if ":min" in label else "")

        lanes.append(lane("chords", "".join(
            seg(s, e, f"chord {chord_cls(label)}", label.replace(":maj", "").replace(":min", "m"),
                f"{label} {clock(s)}-{clock(e)}") for s, e, label in page.chords)))
    step = next(s for s in (5, 10, 30, 60, 120, 300) if d / s <= 12)
    marks = "".join(f'<span style="left:{_pct(t, d)}%">{clock(t)[:-2]}</span>'
                    for t in range(0, int(d) + 1, step))
    lanes.append(f'<div class="lane"><span class="name"></span><div class="axis">{marks}</div></div>')
    return "\n".join(lanes)


def _legend(page: Page, colours: dict[str, str]) -> str:
    items = [f'<span><i style="background:{c}"></i>section {_e(label)}</span>' for label, c in colours.items()]
    items.append('<span>thick ticks: downbeats' + (", thin: beats" if page.beats else "") + "</span>")
    return '<div class="legend">' + "".join(items) + "</div>"


def _card(i: int, card: Card, colours: dict[str, str]) -> str:
    style = f' style="--sec:{colours[card.section]}"' if card.section in colours else ""
    sec = f'<span class="sec">{_e(card.section)}</span>' if card.section else ""
    parts = [f'<article class="card" tabindex="0" role="button" data-start="{card.start:.3f}" '
             f'data-end="{card.end:.3f}"{style} aria-label="shot {i} at {clock(card.start)}">',
             f'<div class="meta"><span><span class="num">{i}</span> · {clock(card.start)}–{clock(card.end)}'
             f'</span>{sec}</div>']
    if card.image:
        parts.append(f'<img src="{_e(card.image)}" alt="{_e(card.caption or f"frame {i}")}" loading="lazy">')
    elif card.caption:
        parts.append('<div class="noimg">frame not available</div>')
    if card.caption:
        parts.append(f'<span class="label">frame caption</span><p class="caption">{_e(card.caption)}</p>')
        parts.append('<span class="label">MV description</span>')
    if card.title:
        parts.append(f"<h3>{_e(card.title)}</h3>")
    parts.append(f'<p class="text">{_e(card.text)}</p></article>')
    return "".join(parts)


def _extra(page: Page) -> str:
    blocks = []
    if page.features or page.chroma:
        rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in page.features)
        chroma = ""
        if page.chroma:
            top = max(page.chroma) or 1.0
            names = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
            chroma = ('<p>Mean chroma</p><div class="chroma">' + "".join(
                f'<div style="height:{max(2.0, 100.0 * v / top):.1f}%" title="{n} {v:.3f}"><span>{n}</span></div>'
                for n, v in zip(names, page.chroma)) + "</div>")
        blocks.append(f'<section><h2>Measured features</h2><div class="panel"><table class="features">{rows}'
                      f"</table>{chroma}</div></section>")
    if page.texts:
        body = "".join(f"<h3>{_e(h)}</h3><p>{_e(t)}</p>" for h, t in page.texts)
        blocks.append(f'<section class="texts"><h2>Other texts</h2><div class="panel">{body}</div></section>')
    return "\n".join(blocks)


def write_page(page: Page, out: str | os.PathLike) -> Path:
    """Render ``page`` to ``out`` (atomically)."""
    from mv4all.safety import atomic_write_text

    return atomic_write_text(out, render(page))
