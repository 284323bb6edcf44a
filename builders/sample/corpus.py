"""Write the embedded sample corpus in the exact Music4All layout, plus videos and truth.

Everything is synthesised from ``specs.default_specs``: music (drums, bass, chords,
melody), lyrics, and music videos of several styles. ``ground_truth.jsonl`` records what
was generated so the builder's measurements can be checked against it.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from builders.music4all import write_table
from builders.sample.specs import ClipSpec, default_specs
from mv4all.schema import CLIP_SECONDS

SAMPLE_RATE = 44100


def _render_clip(spec: ClipSpec, out: Path, duration: float) -> dict:
    from builders.sample.lyrics import write_lyrics
    from builders.sample.music import synthesize, write_mp3
    from builders.sample.video import render_video

    audio, music_truth = synthesize(spec, duration=duration, sr=SAMPLE_RATE)
    audio_path = out / "audios" / f"{spec.id}.mp3"
    write_mp3(audio_path, audio, SAMPLE_RATE)
    (out / "lyrics" / f"{spec.id}.txt").write_text(write_lyrics(spec), encoding="utf-8")
    video_truth = render_video(spec, out / "videos" / f"{spec.id}.mp4", duration=duration, audio_path=audio_path)
    return {
        "id": spec.id,
        "artist": spec.artist,
        "song": spec.song,
        "genres": list(spec.genres),
        "lang": spec.lang,
        "instrumental": spec.instrumental,
        "lyrics_themes": list(spec.lyrics_themes),
        "mv_style": spec.mv_style,
        "video_kind": spec.video_kind,
        "palette": spec.palette,
        "expect_dropped": spec.expect_dropped,
        "metadata_tempo": spec.metadata_tempo,
        "music": music_truth,
        "video": video_truth,
    }


def _metadata_rows(specs: list[ClipSpec]) -> dict[str, tuple[list[str], list[list[str]]]]:
    key_index = {"C": 0, "C#": 1, "D": 2, "Eb": 3, "E": 4, "F": 5, "F#": 6, "G": 7, "Ab": 8, "A": 9, "Bb": 10, "B": 11}
    return {
        "id_information.csv": (
            ["id", "artist", "song", "album_name"],
            [[s.id, s.artist, s.song, s.album] for s in specs],
        ),
        "id_metadata.csv": (
            ["id", "spotify_id", "popularity", "release", "danceability",
             "energy", "key", "mode", "valence", "tempo", "duration_ms"],
            [
                [
                    s.id, f"sp{s.id[:14]}", str(30 + s.seed % 60), str(2000 + s.seed % 24),
                    f"{s.danceability:.3f}", f"{s.energy:.3f}", str(key_index[s.tonic]),
                    "1" if s.mode == "major" else "0",
                    f"{s.valence:.3f}", f"{s.metadata_tempo:.3f}" if s.metadata_tempo else "0",
                    str(180000 + 1000 * (s.seed % 90)),
                ]
                for s in specs
            ],
        ),
        "id_genres.csv": (["id", "genres"], [[s.id, ",".join(s.genres)] for s in specs]),
        "id_tags.csv": (["id", "tags"], [[s.id, ",".join(s.tags)] for s in specs]),
        "id_lang.csv": (["id", "lang"], [[s.id, s.lang] for s in specs]),
    }


def write_sample_corpus(out: Path, clips: int = 18, seed: int = 0, duration: float = CLIP_SECONDS, workers: int = 1,
                        progress=None) -> list[dict]:
    """Write ``clips`` synthetic tracks under ``out``; returns the ground-truth records."""
    out = Path(out)
    for sub in ("audios", "lyrics", "videos"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    specs = default_specs(clips, seed)
    for filename, (header, rows) in _metadata_rows(specs).items():
        write_table(out / filename, header, rows)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_render_clip, s, out, duration) for s in specs]
            truths = []
            for f in futures:
                truths.append(f.result())
                if progress:
                    progress()
    else:
        truths = []
        for s in specs:
            truths.append(_render_clip(s, out, duration))
            if progress:
                progress()
    with (out / "ground_truth.jsonl").open("w", encoding="utf-8") as f:
        for t in truths:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    return truths
