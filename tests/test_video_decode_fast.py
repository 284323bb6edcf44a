"""The cheap paths of the frames stage give what the plain ones gave.

``builders.video.decode`` scales YUV planes to the working size before converting to RGB and
halves large planes with OpenCV's exact 2x2 box average before the last area resize;
``builders.video.faces`` reads percentiles off a histogram; ``builders.video.analysis``
measures pixel-identical frames once. Each is checked here against the plain computation.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from builders.video.decode import _plane, _to_rgb, decode_clip, fit, shrink
from builders.video.faces import percentiles
from builders.video.frame_stats import frame_key, measure_frame


def _pattern(w: int, h: int, i: int) -> np.ndarray:
    """A moving picture with sharp colour edges, gradients and fine texture."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 127 + 120 * np.sin((xx + 7 * i) / 23.0)
    g = 127 + 120 * np.cos((yy - 5 * i) / 17.0)
    b = np.where(((xx // 40 + yy // 40 + i) % 2) == 0, 230, 25).astype(np.float32)
    rgb = np.stack([r, g, b], axis=2)
    rgb[h // 3 : h // 2, w // 4 : w // 2] = (250, 30, 30)  # a flat saturated block with hard edges
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _write(path: Path, w: int, h: int, frames: int, fps: int = 10) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_pattern(w, h, i), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def hd_video(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("hd") / "hd.mp4", 1280, 720, 12)


def test_shrink_matches_one_area_resize():
    rng = np.random.default_rng(0)
    plane = cv2.GaussianBlur(rng.integers(0, 256, (720, 1280), dtype=np.uint8), (5, 5), 0)
    direct = cv2.resize(plane, (96, 54), interpolation=cv2.INTER_AREA)
    fast = shrink(plane, 96, 54)
    assert fast.shape == direct.shape == (54, 96)
    diff = np.abs(fast.astype(int) - direct.astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 4  # worst case (noise); ~0.1 mean, max 2 on real video
    # less than 4x the target: the plain single resize, bit for bit
    small = plane[:180, :320]
    assert np.array_equal(shrink(small, 96, 54), cv2.resize(small, (96, 54), interpolation=cv2.INTER_AREA))
    assert shrink(small, 320, 180) is small


def test_scaled_decode_matches_full_decode_then_resize(hd_video):
    w, h = fit(1280, 720, 512)
    with av.open(str(hd_video)) as container:
        frames = list(container.decode(video=0))[:4]
    for frame in frames:
        fast = _to_rgb(frame, w, h, None)
        i420 = np.concatenate([_plane(frame, k).reshape(-1) for k in (0, 1, 2)])
        full = cv2.cvtColor(i420.reshape(720 * 3 // 2, 1280), cv2.COLOR_YUV2RGB_I420)
        plain = cv2.resize(full, (w, h), interpolation=cv2.INTER_AREA)
        assert fast.shape == plain.shape == (288, 512, 3) and fast.dtype == np.uint8
        # luma: the same up to rounding; colour: chroma is averaged at half the working size
        # (as the JPEGs store it, 4:2:0), so sharp colour edges soften a little
        gray = np.abs(cv2.cvtColor(fast, cv2.COLOR_RGB2GRAY).astype(int) - cv2.cvtColor(plain, cv2.COLOR_RGB2GRAY))
        assert gray.mean() < 0.6 and np.percentile(gray, 99) <= 2
        diff = np.abs(fast.astype(int) - plain.astype(int))
        assert abs(float((fast.astype(int) - plain).mean())) < 0.2 and diff.mean() < 5.0
    # what decode_clip keeps has the working size too, and the thumbnails their size
    dec = decode_clip(hd_video, 2, 0.5, 0.0, 1.0, 0.2, 512)
    assert all(rgb.shape == (288, 512, 3) for _, rgb in dec.samples.values())
    assert dec.thumbs_y and all(y.shape == (54, 96) for y in dec.thumbs_y)
    assert all(u.shape == (27, 48) for u in dec.thumbs_u)


def test_non_yuv420_frames_still_convert_through_swscale():
    from av.video.reformatter import VideoReformatter

    frame = av.VideoFrame.from_ndarray(_pattern(320, 180, 0), format="rgb24").reformat(format="yuv444p")
    got = _to_rgb(frame, 160, 90, VideoReformatter())
    assert np.array_equal(got, frame.to_ndarray(format="rgb24", width=160, height=90))


def test_histogram_percentiles_equal_numpy():
    rng = np.random.default_rng(1)
    for i in range(200):
        h, w = (int(x) for x in rng.integers(1, 120, 2))
        gray = np.clip(rng.normal(rng.uniform(0, 255), rng.uniform(1, 80), (h, w)), 0, 255).astype(np.uint8)
        assert percentiles(gray, (1, 99)) == list(np.percentile(gray, (1, 99)))


def test_identical_frames_are_measured_once_with_the_same_result(tmp_path, monkeypatch):
    rgb = _pattern(320, 180, 3)
    plain, _ = measure_frame(rgb, 2.0)
    memo: dict = {}
    first, _ = measure_frame(rgb, 2.0, memo=memo, key=frame_key(rgb))
    again, _ = measure_frame(rgb.copy(), 4.0, memo=memo, key=frame_key(rgb.copy()))
    assert first == plain and again.model_copy(update={"t": 2.0}) == plain
    assert frame_key(rgb) != frame_key(_pattern(320, 180, 4))
    # a still picture sampled three times: encoded, measured and face-searched once
    import builders.video.frame_stats as fs
    from builders.video.analysis import _measure_samples
    from builders.video.decode import Decoded

    calls = []
    real = fs.detect_faces
    monkeypatch.setattr(fs, "detect_faces", lambda gray: calls.append(1) or real(gray))
    dec = Decoded()
    dec.samples = {i: (2.0 * i, rgb.copy()) for i in range(3)}
    dec.partners = {i: (2.0 * i + 0.5, rgb.copy()) for i in range(3)}
    frames, pairs, gradual = _measure_samples(dec, tmp_path, 2.0, [])
    assert len(calls) == 1 and gradual == 0 and len(pairs) == 3
    assert [f.t for f in frames] == [0.0, 2.0, 4.0]
    assert len({f.model_copy(update={"t": 0.0}).model_dump_json() for f in frames}) == 1
    jpegs = sorted(tmp_path.glob("*.jpg"))
    assert len(jpegs) == 3 and len({p.read_bytes() for p in jpegs}) == 1
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert jpegs[0].read_bytes() == buf.tobytes()
