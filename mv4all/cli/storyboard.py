"""``mv4all storyboard``: a whole-song MV script, or a dataset row with its gold MV's frames, as one
self-contained HTML page (``mv4all.storyboard``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from mv4all.cli.common import app, check_writable, console, fail


@app.command()
def storyboard(
    script: Optional[Path] = typer.Argument(
        None, help="A whole-song MV script JSON (mv4all describe --whole-song). Not with --dataset."),
    dataset: Optional[Path] = typer.Option(
        None, "--dataset", help="A built dataset folder: show its row --id (train or test split)."),
    clip_id: Optional[str] = typer.Option(None, "--id", help="With --dataset: the row's id."),
    audio: Optional[Path] = typer.Option(
        None, "--audio", help="The song to play on the page [a dataset row: AUDIO_ROOT/the row's audio path]."),
    audio_root: Optional[Path] = typer.Option(
        None, "--audio-root", help="With --dataset: the Music4All folder the row's audio path is relative to."),
    frames: Optional[Path] = typer.Option(
        None, "--frames", help="With --dataset: the row's sampled frame JPEGs (NN.jpg), or a folder of per-id "
        "folders [found from the build's work dir]."),
    work: Optional[str] = typer.Option(
        None, "--work", help="With --dataset: the build's work dir, a folder or an fsspec URL "
        "[DATASET.work, else work/ beside the dataset]."),
    videos: Optional[Path] = typer.Option(
        None, "--videos", help="With --dataset: decode ID.mp4 from this folder when no stored frames are found."),
    max_audio_mb: float = typer.Option(
        20.0, "--max-audio-mb", min=0.0,
        help="Embed audio up to this size; larger audio is referred to by a path relative to the page."),
    out: Path = typer.Option(..., "--out", "-o", help="The HTML page to write."),
) -> None:
    """Write a storyboard page: the song's facts, overview, a timeline (sections, downbeats, chords) and a card per
    shot; clicking a card seeks the audio. With --dataset --id: the gold MV's frames next to its breakdown."""
    from pydantic import ValidationError

    from mv4all import storyboard as sb
    from mv4all.schema import SongScript

    started = time.perf_counter()
    if (script is None) == (dataset is None):
        fail("give either a script JSON or --dataset DIR --id ID", 2)
    if dataset is not None and not clip_id:
        fail("--dataset needs --id ID (the row to show)", 2)
    if script is not None and any(o is not None for o in (clip_id, audio_root, frames, work, videos)):
        fail("--id, --audio-root, --frames, --work and --videos go with --dataset, not with a script", 2)
    if audio is not None and not audio.is_file():
        fail(f"--audio {audio}: no such file", 2)
    check_writable(out, "--out")

    if script is not None:
        try:
            song = SongScript.model_validate_json(script.read_bytes())
        except FileNotFoundError:
            fail(f"script not found: {script}", 2)
        except (OSError, ValueError, ValidationError) as exc:
            fail(f"{script} is not a whole-song MV script (mv4all describe --whole-song): "
                 f"{str(exc).splitlines()[0]}", 2)
        page = sb.page_from_script(song)
    else:
        try:
            row, split = sb.load_row(dataset, clip_id)
        except (KeyError, ValueError, FileNotFoundError) as exc:
            fail(str(exc.args[0] if isinstance(exc, KeyError) else exc), 2)
        images, note = _row_frames(sb, dataset, clip_id, frames, work, videos)
        page = sb.page_from_row(row, images, note)
        page.subtitle += f" · {split} split"
        if audio is None and audio_root is not None:
            audio = Path(audio_root) / row["audio"]
            if not audio.is_file():
                page.notes.append(f"The row's audio was not found at {audio}: no player.")
                audio = None

    if audio is not None:
        page.audio = sb.audio_source(audio, out, max_audio_mb)
        if not page.audio.embedded:
            page.notes.append(page.audio.note)
    written = sb.write_page(page, out)
    size = written.stat().st_size
    what = "with audio embedded" if page.audio and page.audio.embedded else (
        "audio linked by relative path" if page.audio else "no audio")
    console.print(f"wrote {written} ({size / 1024:.0f} KB, {len(page.cards)} cards, {what}) in "
                  f"{time.perf_counter() - started:.1f} s", markup=False, soft_wrap=True)
    for note in page.notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True)


def _row_frames(sb, dataset: Path, clip_id: str, frames: Optional[Path], work: Optional[str],
                videos: Optional[Path]) -> tuple[list[str] | None, str]:
    """The row's frames as data URIs (stored JPEGs, else decoded from --videos), or None and why."""
    from mv4all.data import read_build_info

    try:
        if work is not None and "://" in work and frames is None:
            jpegs, looked = sb.frames_at_url(dataset, clip_id, work)
            if jpegs:
                return [sb.jpeg_data_uri(j) for j in jpegs], ""
        else:
            files, looked = sb.find_frames(dataset, clip_id, frames=frames, work=work)
            if files:
                return [sb.jpeg_data_uri(f.read_bytes()) for f in files], ""
    except ValueError as exc:
        fail(str(exc), 2)
    if videos is not None:
        opts = ((read_build_info(dataset) or {}).get("config") or {}).get("frames") or {}
        video = Path(videos) / f"{clip_id}.mp4"
        try:
            kwargs = {k: float(opts[k]) for k in ("every", "clip_start", "clip_seconds") if k in opts}
            return sb.decode_video_frames(video, **kwargs), ""
        except (ValueError, FileNotFoundError) as exc:
            return None, f"The gold MV's frames were not found in {looked}, and {exc}: showing the frame captions only."
    return None, (f"The gold MV's frames were not found (looked in {looked}): showing the frame captions only. "
                  "Give --frames DIR, --work DIR or --videos DIR to show them.")
