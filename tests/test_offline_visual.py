"""Offline visual captions and MV-type rules, on measured statistics of synthetic videos."""

from __future__ import annotations

import re
from pathlib import Path

import av
import pytest

from builders.llm.offline.visual import caption_frames, classify_mv_type, explain_mv_type
from builders.sample.specs import default_specs, with_overrides
from builders.sample.video import render_video
from builders.video import analyse_video
from builders.video.records import FrameStats, VisualStats
from mv4all.schema import MV_TYPES, Track

SECONDS = 12.0
COLOUR_WORDS = {"red", "orange", "yellow", "green", "teal", "cyan", "blue", "purple", "pink", "brown"}


def _spec(style: str, kind: str = "moving"):
    return next(s for s in default_specs(18) if s.mv_style == style and s.video_kind == kind)


def _recolour_red_to_blue(src: Path, dst: Path) -> None:
    """Re-encode a video with red and blue swapped in every frame."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream("libx264", rate=int(round(float(vin.average_rate))))
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        vout.options = {"preset": "ultrafast", "threads": "1"}
        for frame in inp.decode(vin):
            rgb = frame.to_ndarray(format="rgb24")[:, :, ::-1].copy()
            for packet in vout.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in vout.encode(None):
            out.mux(packet)


@pytest.fixture(scope="module")
def stats(tmp_path_factory):
    root = tmp_path_factory.mktemp("offline_visual")
    out = {}
    red = with_overrides(_spec("Artistic/Abstract"), palette="red")
    for name, spec in (
        ("red", red),
        ("lyric", _spec("Lyric Video")),
        ("ken_burns", _spec("Static/Dynamic Picture Montage", "ken_burns")),
        ("still", _spec("Static/Dynamic Picture Montage", "still")),
        ("cinematic", _spec("Cinematic Drama")),
    ):
        path = root / f"{name}.mp4"
        render_video(spec, path, duration=SECONDS)
        out[name] = analyse_video(path, root / f"f_{name}", clip_seconds=SECONDS)
    _recolour_red_to_blue(root / "red.mp4", root / "blue.mp4")
    out["blue"] = analyse_video(root / "blue.mp4", root / "f_blue", clip_seconds=SECONDS)
    out["red_again"] = analyse_video(root / "red.mp4", root / "f_red_again", clip_seconds=SECONDS)
    return out


def _colour_words(captions) -> set[str]:
    words = set()
    for c in captions.captions:
        words |= set(re.findall(r"[a-z]+", c.caption.lower())) & COLOUR_WORDS
    return words


def test_one_caption_per_frame_grounded_and_varied(stats):
    v = stats["cinematic"]
    caps = caption_frames(v)
    assert [c.t for c in caps.captions] == [f.t for f in v.frames]
    texts = [c.caption for c in caps.captions]
    assert all(t.endswith(".") and len(t) > 20 for t in texts)
    assert len(set(texts)) == len(texts)  # no two frames get the same caption
    assert any("letterboxed" in t for t in texts)
    assert any("face" in t for t in texts) == any(f.faces for f in v.frames)
    assert texts[0].startswith("Opening")
    lyric = caption_frames(stats["lyric"]).captions
    assert sum("text" in c.caption for c in lyric) >= len(lyric) // 2


def test_recolouring_red_to_blue_changes_colour_words(stats):
    red = _colour_words(caption_frames(stats["red"]))
    blue = _colour_words(caption_frames(stats["blue"]))
    assert "red" in red and "blue" not in red
    assert "blue" in blue and "red" not in blue
    assert red != blue


def test_captions_deterministic(stats):
    a = caption_frames(stats["red"]).model_dump_json()
    b = caption_frames(VisualStats.model_validate_json(stats["red"].model_dump_json())).model_dump_json()
    assert a == b
    # the whole path is deterministic: analysing the same file again gives the same captions
    assert stats["red_again"].model_dump_json() == stats["red"].model_dump_json()
    assert caption_frames(stats["red_again"]).model_dump_json().encode() == a.encode()


def test_classifier_on_rendered_clips(stats):
    assert classify_mv_type(stats["lyric"]) == "Lyric Video"
    assert classify_mv_type(stats["ken_burns"]) == "Static/Dynamic Picture Montage"
    assert classify_mv_type(stats["still"]) == "Static/Dynamic Picture Montage"
    assert classify_mv_type(stats["cinematic"]) == "Cinematic Drama"
    assert classify_mv_type(stats["red"]) == "Artistic/Abstract"
    # swapping red and blue changes colours, not what kind of video it is
    assert classify_mv_type(stats["blue"]) == "Artistic/Abstract"


def _frame(i: int, **kw) -> FrameStats:
    base = dict(
        t=2.0 * i, mean_rgb=[100.0, 100.0, 100.0], brightness=100.0, saturation=0.4, colours=["gray"], motion=5.0,
        cut_before=False, faces=0, text_overlay=False, edge_density=0.05,
    )
    base.update(kw)
    return FrameStats(**base)


def _visual(frames: list[FrameStats], **kw) -> VisualStats:
    base = dict(width=640, height=360, fps=25.0, duration=30.0,
                frames=frames, static_score=5.0, shot_count=4, zoom_pan=False)
    base.update(kw)
    return VisualStats(**base)


def test_rules_are_general_visual_reasoning():
    plain = [_frame(i) for i in range(15)]
    dark_wide = [_frame(i, brightness=35.0, letterbox=True, bars=0.24) for i in range(15)]
    assert (classify_mv_type(_visual(dark_wide, letterbox=True, brightness=35.0, cuts_per_minute=4.0))
            == "Cinematic Drama")
    cartoon = [_frame(i, flat_colour=0.6, saturation=0.8) for i in range(15)]
    assert classify_mv_type(_visual(cartoon, flat_colour=0.6, saturation=0.8, colourfulness=120.0)) == "Animation"
    texty = [_frame(i, text_overlay=i % 4 != 0) for i in range(15)]
    assert classify_mv_type(_visual(texty, text_share=11 / 15)) == "Lyric Video"
    faces = [_frame(i, faces=1 if i % 2 else 0, face_size=0.3, cut_before=i % 3 == 0) for i in range(15)]
    assert classify_mv_type(_visual(faces, face_share=7 / 15, shot_count=7, cuts_per_minute=12.0)) == "Story Narrative"
    assert classify_mv_type(_visual(plain, static_score=0.05, shot_count=6)) == "Static/Dynamic Picture Montage"
    assert classify_mv_type(_visual(plain, zoom_pan=True, zoom_pan_share=0.9)) == "Static/Dynamic Picture Montage"
    assert classify_mv_type(_visual(plain, shake=1.5, saturation=0.08)) == "Behind-the-Scenes"
    assert (classify_mv_type(_visual(plain, flicker=6.0, brightness=40.0, cuts_per_minute=30.0, shot_count=16))
            == "Live Performance")
    # rhythm in time with the song
    track = Track(id="x" * 16, artist="a", song="s", tempo=128.0)
    assert classify_mv_type(_visual(plain, motion_periodicity=0.8, motion_bpm=128.0, cuts_per_minute=10.0),
                            track=track) == "Dance Performance"
    ranked = explain_mv_type(_visual(dark_wide, letterbox=True, brightness=35.0))
    assert ranked[0][0] == "Cinematic Drama" and ranked[0][2]  # with reasons
    assert {r[0] for r in ranked} == set(MV_TYPES)


def test_tags_only_break_ties():
    plain = [_frame(i) for i in range(15)]
    none = _visual(plain, static_score=3.0)
    live = Track(id="x" * 16, artist="a", song="s", genres=["rock"], tags=["live"])
    dance = Track(id="x" * 16, artist="a", song="s", genres=["house"], tags=["dance"])
    assert classify_mv_type(none, track=live) == "Live Performance"
    assert classify_mv_type(none, track=dance) == "Dance Performance"
    strong = _visual([_frame(i, text_overlay=True) for i in range(15)], text_share=1.0)
    assert classify_mv_type(strong, track=dance) == "Lyric Video"
    assert classify_mv_type(_visual([], static_score=0.0)) == "Static/Dynamic Picture Montage"
