"""The offline MV description: the paper's shape, and an overview that agrees with what was measured.

The bands below are written here from the writer's documented rules (module docstring of
``builders.llm.offline.mv_writer``), and every claim is checked against the measured frame
statistics in the work store and the row's music features, not against the writer's output.
"""

from __future__ import annotations

import re
import statistics

import pytest

from mv4all.data import load_split
from mv4all.schema import MVDescription

# The within-shot motion bands (mean absolute luma change), upper bounds.
BANDS = [(0.3, "still"), (1.0, "slight"), (3.0, "gentle"), (8.0, "steady"), (16.0, "lively"), (1e9, "rapid")]
OVERVIEW_MOTION = {
    "an almost motionless picture": "still", "barely any movement": "slight", "gentle, unhurried movement": "gentle",
    "steady movement": "steady", "lively movement": "lively", "rapid, restless movement": "rapid",
}
# What a frame caption (the captioner's words) says about its frame's motion band.
CAPTION_MOTION = {
    "holds completely still": "still", "nothing moves": "still", "almost no movement": "slight",
    "barely any motion": "slight", "gentle movement": "gentle", "slow, gentle motion": "gentle",
    "steady movement": "steady", "moderate motion": "steady", "lively movement": "lively", "brisk motion": "lively",
    "rapid, energetic movement": "rapid", "fast, restless motion": "rapid",
}
BEAT_MOTION = {"held still": "still", "barely moving": "slight", "moving gently": "gentle",
               "moving steadily": "steady", "moving briskly": "lively", "in rapid motion": "rapid"}
MV_TYPE_WORDS = {
    "Live Performance": "live performance", "Lyric Video": "lyric video", "Animation": "animated",
    "Story Narrative": "story-driven", "Artistic/Abstract": "abstract", "Dance Performance": "dance performance",
    "Behind-the-Scenes": "behind-the-scenes", "Nature/Scenic": "scenic nature",
    "Static/Dynamic Picture Montage": "picture montage", "Cinematic Drama": "cinematic drama",
}
SLOW_CAMERA_CLAIMS = ("slow-moving", "long takes", "unhurried", "motionless", "barely any movement")
FAST_CAMERA_CLAIMS = ("rapid", "restless", "fast cuts", "rapid-fire", "handheld")


def band(value: float) -> str:
    return next(name for upper, name in BANDS if value < upper)


def said(text: str, table: dict[str, str]) -> str | None:
    found = {v for k, v in table.items() if k in text}
    assert len(found) <= 1, f"two contradicting claims in one text: {found}: {text}"
    return found.pop() if found else None


@pytest.fixture(scope="module")
def rows_with_stats(sample_build):
    frames = sample_build.stage_outputs("frames")
    rows = [r for split in ("train", "test") for r in load_split(sample_build.out, "mv_description", split)]
    assert len(rows) >= 10
    return [(r, frames[r["id"]]) for r in rows]


def test_shape_is_the_papers(rows_with_stats):
    """Overview 60-90 words, 15 beats of 10-25 words, a closing sentence; about 350 words in all."""
    totals = []
    for row, _ in rows_with_stats:
        desc = MVDescription.parse(row["mv_description_text"])
        assert desc == MVDescription.model_validate(row["mv_description"])
        assert 55 <= len(desc.overview.split()) <= 95, desc.overview
        assert len(desc.beats) == 15
        for beat in desc.beats:
            assert 10 <= len(beat.text.split()) <= 25, beat.text
        assert desc.closing.endswith(".") and 8 <= len(desc.closing.split()) <= 30
        totals.append(len(" ".join([desc.overview, *(b.text for b in desc.beats), desc.closing]).split()))
    assert 280 <= statistics.median(totals) <= 420, totals


def test_overview_agrees_with_the_measurements(rows_with_stats):
    for row, stats in rows_with_stats:
        overview = MVDescription.parse(row["mv_description_text"]).overview
        low = overview.lower()
        moving = [f["motion"] for f in stats["frames"] if f.get("motion_in_shot", True)]
        claimed = said(low, OVERVIEW_MOTION)
        if "slow camera moves over still pictures" in low:
            glides = sum("over a motionless picture" in c["caption"] for c in row["frame_captions"])
            assert glides >= len(moving) / 2, (row["id"], overview)
        elif moving:
            assert claimed == band(statistics.median(moving)), (row["id"], claimed, statistics.median(moving))
            if claimed in ("still", "slight", "gentle"):
                assert not any(w in low for w in FAST_CAMERA_CLAIMS), overview
            if claimed in ("lively", "rapid"):
                assert not any(w in low for w in SLOW_CAMERA_CLAIMS), overview
        cpm = stats["cuts_per_minute"]
        expected_cuts = ("no cuts at all" if cpm < 1 else "only a few cuts" if cpm < 6 else
                         "a cut every few seconds" if cpm < 20 else "rapid-fire cutting")
        assert expected_cuts in low, (row["id"], cpm, overview)
        bright = stats["brightness"]
        light = "low-key and shadowy" if bright < 70 else "bright and airy" if bright > 170 else "evenly lit"
        assert light in low, (row["id"], bright, overview)
        measured_colours = {c.lower() for f in stats["frames"] for c in f["colours"]} | {"gray"}
        palette = re.search(r"in ([a-z, ]+?) tones", low)
        assert palette, overview
        for colour in re.split(r", | and ", palette.group(1)):
            assert colour in measured_colours, (row["id"], colour, measured_colours)
        tempo = row["music_features"]["tempo"]
        if tempo > 0:
            assert f"{round(tempo)} bpm" in low
        assert MV_TYPE_WORDS[row["mv_type"]] in low, (row["mv_type"], overview)
        energy = row["music_features"]["energy"]
        if energy is not None and energy < 0.3:
            assert "high energy" not in low and "relentless" not in low
        if energy is not None and energy >= 0.8:
            assert "low energy" not in low and "subdued" not in low


def test_each_beat_moves_as_its_frame_caption_says(rows_with_stats):
    checked = 0
    for row, _ in rows_with_stats:
        beats = MVDescription.parse(row["mv_description_text"]).beats
        for beat, caption in zip(beats, row["frame_captions"], strict=True):
            from_caption, from_beat = said(caption["caption"], CAPTION_MOTION), said(beat.text, BEAT_MOTION)
            if from_caption and from_beat:
                assert from_caption == from_beat, (beat.text, caption["caption"])
                checked += 1
    assert checked >= 50


def test_a_fast_classical_video_is_not_called_slow():
    """Genre never makes a camera claim: the old writer promised 'elegant, slow-moving camerawork' here."""
    from builders.llm.offline.mv_writer import write_mv_description
    from builders.llm.offline.text import Chooser
    from builders.stages import StageInput
    from builders.video.records import FrameStats, VisualStats
    from mv4all.schema import Beat, FrameCaption, LibrosaDescriptors, MusicFeatures, Track

    frames = [FrameStats(t=2.0 * i, mean_rgb=[120, 110, 100], brightness=120, saturation=0.4, colours=["blue", "white"],
                         motion=25.0, cut_before=i % 3 == 0 and i > 0, faces=0, text_overlay=False, edge_density=0.05,
                         residual=25.0) for i in range(15)]
    visual = VisualStats(width=320, height=180, fps=24, duration=30, frames=frames, static_score=25.0, shot_count=5,
                         zoom_pan=False, cuts_per_minute=8.0, brightness=120)
    features = MusicFeatures(duration=30, tempo=72.0, tempo_strength=0.5, beats_per_bar=4,
                             beats=[Beat(time=0.5 * k * 60 / 72 * 2, number=k % 4 + 1) for k in range(36)],
                             downbeats=[], key="D major", key_confidence=0.8, chords=[], energy=0.2, valence=0.7,
                             danceability=0.3, librosa=LibrosaDescriptors.model_validate(_librosa()))
    track = Track(id="x", artist="a", song="s", genres=["classical", "piano"], tags=[], lang="INTRUMENTAL")
    inp = StageInput(clip_id="x", track=track, music_features=features, visual=visual, mv_type="Cinematic Drama",
                     frame_captions=[FrameCaption(t=f.t, caption="A frame.") for f in frames])
    desc = write_mv_description(inp, Chooser("x"))
    low = desc.overview.lower()
    assert "rapid, restless movement" in low and "a cut every few seconds" in low
    assert not any(w in low for w in SLOW_CAMERA_CLAIMS + ("elegant",)), desc.overview
    assert all("in rapid motion" in b.text for b in desc.beats), [b.text for b in desc.beats]


def _librosa() -> dict:
    from mv4all.schema import LibrosaDescriptors

    return {name: [0.0] * 12 if "chroma" in name else 0.0 for name in LibrosaDescriptors.model_fields}
