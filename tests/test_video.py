"""Frames, visual statistics and the static filter on short synthetic music videos."""

from __future__ import annotations

import hashlib
import math
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

from builders.sample.specs import default_specs, with_overrides
from builders.sample.video import render_video
from builders.video import VideoDecodeError, analyse_video, static_decision

SECONDS = 12.0  # short clips keep the suite fast: 6 frames at one per 2 s


def _spec(style: str, kind: str = "moving"):
    return next(s for s in default_specs(18) if s.mv_style == style and s.video_kind == kind)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("videos")
    wanted = {
        "dance": _spec("Dance Performance"),
        "story": _spec("Story Narrative"),
        "lyric": _spec("Lyric Video"),
        "still": _spec("Static/Dynamic Picture Montage", "still"),
        "slideshow": _spec("Static/Dynamic Picture Montage", "slideshow"),
        "ken_burns": _spec("Static/Dynamic Picture Montage", "ken_burns"),
    }
    out = {}
    for name, spec in wanted.items():
        path = root / f"{name}.mp4"
        out[name] = (path, render_video(spec, path, duration=SECONDS))
    return out


@pytest.fixture(scope="module")
def analysed(clips, tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    return {name: analyse_video(path, root / name, clip_seconds=SECONDS) for name, (path, _) in clips.items()}


def test_render_truth_and_determinism(clips, tmp_path):
    path, truth = clips["story"]
    assert truth["mv_style"] == "Story Narrative" and truth["video_kind"] == "moving"
    assert truth["shots"] >= 2 and truth["has_face"] is True and truth["has_text_overlay"] is False
    assert truth["duration"] == SECONDS and truth["frames"] == int(SECONDS * truth["fps"])
    again = render_video(_spec("Story Narrative"), tmp_path / "again.mp4", duration=SECONDS)
    assert (hashlib.sha256(path.read_bytes()).hexdigest()
            == hashlib.sha256((tmp_path / "again.mp4").read_bytes()).hexdigest())
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in truth.items() if k != "seconds"}
    assert clips["lyric"][1]["has_text_overlay"] is True
    assert clips["still"][1]["shots"] == 1 and clips["slideshow"][1]["shots"] >= 2


def test_render_is_fast_and_small(tmp_path):
    truth = render_video(_spec("Live Performance"), tmp_path / "live.mp4", duration=SECONDS)
    assert truth["seconds"] < 2.0
    assert (tmp_path / "live.mp4").stat().st_size < 2_000_000
    assert truth["width"] <= 384 and truth["fps"] <= 15


def test_frames_count_times_and_jpegs(clips, tmp_path):
    path, _ = clips["dance"]
    v = analyse_video(path, tmp_path / "f", clip_seconds=SECONDS, max_side=256)
    assert [f.t for f in v.frames] == pytest.approx([0, 2, 4, 6, 8, 10], abs=0.1)
    jpgs = sorted((tmp_path / "f").glob("*.jpg"))
    assert [p.name for p in jpgs] == [f"{i:02d}.jpg" for i in range(6)]
    img = cv2.imread(str(jpgs[0]))
    assert img is not None and max(img.shape[:2]) <= 256
    assert v.width == 320 and v.height == 180 and v.fps == pytest.approx(12, abs=0.1)
    for f in v.frames:
        assert len(f.mean_rgb) == 3 and 0 <= f.brightness <= 255 and 0 <= f.saturation <= 1
        assert f.colours and all(isinstance(c, str) for c in f.colours)


def test_defaults_sample_fifteen_frames_from_thirty_seconds(tmp_path):
    path = tmp_path / "abstract.mp4"
    render_video(_spec("Artistic/Abstract"), path, duration=30.0)
    v = analyse_video(path, tmp_path / "f")
    assert len(v.frames) == 15 and v.frames[-1].t == pytest.approx(28.0, abs=0.1)
    assert len(list((tmp_path / "f").glob("*.jpg"))) == 15


def test_static_filter_drops_stills_keeps_motion(analysed):
    for name in ("still", "slideshow"):
        keep, reason = static_decision(analysed[name])
        assert not keep, (name, reason)
        assert analysed[name].static_score < 0.3
        assert "dropped" in reason and f"{analysed[name].static_score:.2f}" in reason
    assert "slideshow" in static_decision(analysed["slideshow"])[1]
    for name in ("ken_burns", "dance", "story", "lyric"):
        keep, reason = static_decision(analysed[name])
        assert keep, (name, reason)
        assert analysed[name].static_score > 1.5, name
        assert "kept" in reason
    assert analysed["ken_burns"].zoom_pan and not analysed["dance"].zoom_pan
    assert "zoom/pan" in static_decision(analysed["ken_burns"])[1]


def test_threshold_is_configurable(analysed):
    score = analysed["dance"].static_score
    assert static_decision(analysed["dance"], threshold=score * 2)[0] is False
    assert static_decision(analysed["still"], threshold=0.0)[0] is True


def test_cuts_faces_text(clips, analysed):
    assert analysed["still"].shot_count == 1
    assert analysed["slideshow"].shot_count == clips["slideshow"][1]["shots"]
    assert analysed["dance"].shot_count == clips["dance"][1]["shots"]
    story = analysed["story"]
    assert any(f.faces for f in story.frames)
    assert any(f.cut_before for f in story.frames[1:])
    assert not any(f.faces for f in analysed["dance"].frames)
    assert analysed["lyric"].text_share >= 0.5
    assert analysed["dance"].text_share == 0 and analysed["still"].text_share == 0


def test_clip_start_seeks(clips, tmp_path):
    path, truth = clips["dance"]
    v = analyse_video(path, tmp_path / "f", clip_start=4.0, clip_seconds=6.0)
    assert [f.t for f in v.frames] == pytest.approx([0, 2, 4], abs=0.1)
    assert all(0 < c < 6.0 for c in v.cut_times)


def test_missing_empty_corrupt_truncated(clips, tmp_path):
    with pytest.raises(VideoDecodeError, match="no such video"):
        analyse_video(tmp_path / "nope.mp4", tmp_path / "f")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty"):
        analyse_video(tmp_path / "empty.mp4", tmp_path / "f")
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError, match="cannot open"):
        analyse_video(tmp_path / "junk.mp4", tmp_path / "f")
    data = clips["dance"][0].read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError):
        analyse_video(tmp_path / "half.mp4", tmp_path / "f", clip_seconds=SECONDS)
    assert issubclass(VideoDecodeError, ValueError)


def test_truncated_faststart_file(clips, tmp_path):
    import av

    src = clips["dance"][0]
    fast = tmp_path / "fast.mp4"
    with av.open(str(src)) as inp, av.open(str(fast), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    assert len(analyse_video(fast, tmp_path / "f", clip_seconds=SECONDS).frames) == 6
    data = fast.read_bytes()
    (tmp_path / "fast_half.mp4").write_bytes(data[: len(data) // 2])  # index intact, media cut off
    with pytest.raises(VideoDecodeError, match="too short"):
        analyse_video(tmp_path / "fast_half.mp4", tmp_path / "f", clip_seconds=SECONDS)


def test_sparse_variable_frame_rate_still_is_dropped(tmp_path):
    """A still-image upload stored as a few long-held frames is a still, not a short video."""
    from fractions import Fraction

    import av

    path = tmp_path / "vfr.mp4"
    img = np.random.default_rng(1).integers(0, 255, (180, 320, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for ms in (0, 5000, 10000):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    v = analyse_video(path, tmp_path / "f", clip_seconds=SECONDS)
    assert [f.t for f in v.frames] == pytest.approx([0, 2, 4, 6, 8, 10])
    keep, reason = static_decision(v)
    assert not keep and v.static_score == 0.0 and "still" in reason


def test_too_short(clips, tmp_path):
    path = clips["dance"][0]
    with pytest.raises(VideoDecodeError, match="too short: 6 of 15 frames"):
        analyse_video(path, tmp_path / "f")  # a 12 s video cannot give 30 s of frames
    v = analyse_video(path, tmp_path / "f", min_frames=5)
    assert len(v.frames) == 6
    with pytest.raises(VideoDecodeError, match="too short"):
        analyse_video(path, tmp_path / "f", clip_start=20.0, clip_seconds=6.0)


def test_render_muxes_audio(tmp_path):
    import av

    wav = tmp_path / "tone.wav"
    rate = 22050
    x = (0.3 * np.sin(2 * math.pi * 440 * np.arange(int(rate * 5)) / rate) * 32767).astype(np.int16)
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.tobytes())
    truth = render_video(_spec("Nature/Scenic"), tmp_path / "with_audio.mp4", duration=4.0, audio_path=wav)
    assert truth["audio"] is True
    with av.open(str(tmp_path / "with_audio.mp4")) as c:
        assert len(c.streams.audio) == 1 and len(c.streams.video) == 1
    v = analyse_video(tmp_path / "with_audio.mp4", tmp_path / "f", clip_seconds=4.0)
    assert len(v.frames) == 2


def test_palette_changes_measured_colour(tmp_path):
    spec = _spec("Animation")
    reds, blues = [], []
    for palette, bucket in (("red", reds), ("blue", blues)):
        path = tmp_path / f"{palette}.mp4"
        render_video(with_overrides(spec, palette=palette, mv_style="Artistic/Abstract"), path, duration=4.0)
        v = analyse_video(path, tmp_path / palette, clip_seconds=4.0)
        bucket.extend(c for f in v.frames for c in f.colours)
    assert "red" in reds and "blue" not in reds
    assert "blue" in blues and "red" not in blues
