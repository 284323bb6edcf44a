"""mv4all.audio.load_audio: every container we meet decodes to the same samples, and bad
files fail with a clear AudioDecodeError instead of a crash or a hang."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from mv4all.audio import AudioDecodeError, load_audio

SR = 44100
FREQ = 440.0


def _tone(seconds: float = 2.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = 0.5 * np.sin(2 * np.pi * FREQ * t)
    y[int(1.0 * sr)] = 1.0  # a click at exactly 1 s marks the time origin
    return y.astype(np.float32)


def _peak_hz(y: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / sr)[spectrum.argmax()])


def _write_m4a(path, y: np.ndarray, sr: int = SR, video: bool = False) -> None:
    """AAC audio in an MP4 container (optionally with a tiny video track, like an MV)."""
    import av

    stereo = np.ascontiguousarray(np.stack([y, y]).astype(np.float32))
    with av.open(str(path), "w") as container:
        vstream = None
        if video:
            vstream = container.add_stream("mpeg4", rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
        astream = container.add_stream("aac", rate=sr)
        astream.layout = "stereo"
        for i in range(0, stereo.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo[:, i : i + 1024]),
                                               format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = sr, i
            container.mux(astream.encode(frame))
        container.mux(astream.encode(None))
        if vstream is not None:
            for k in range(int(len(y) / sr * 10)):
                img = np.full((48, 64, 3), (k * 10) % 255, dtype=np.uint8)
                container.mux(vstream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            container.mux(vstream.encode(None))


def _write_video_only(path) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k in range(5):
            img = np.full((48, 64, 3), k * 40, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode(None))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    y = _tone()
    out = {"y": y}
    out["wav"] = d / "tone.wav"
    sf.write(out["wav"], y, SR, subtype="FLOAT")
    out["flac"] = d / "tone.flac"
    sf.write(out["flac"], y, SR)
    out["mp3"] = d / "tone.mp3"
    sf.write(out["mp3"], y, SR, format="MP3")
    out["m4a"] = d / "tone.m4a"
    _write_m4a(out["m4a"], y)
    out["mp4"] = d / "clip.mp4"
    _write_m4a(out["mp4"], y, video=True)
    out["stereo"] = d / "stereo.wav"
    sf.write(out["stereo"], np.stack([y, np.zeros_like(y)], axis=1), SR, subtype="FLOAT")
    return out


@pytest.mark.parametrize("kind", ["wav", "flac", "mp3", "m4a", "mp4"])
def test_every_container_decodes_to_the_same_tone(files, kind):
    y = load_audio(files[kind])
    assert y.dtype == np.float32 and y.ndim == 1
    # MP3 decoders drop the encoder delay (LAME header); AAC keeps up to a frame of padding.
    assert len(files["y"]) <= len(y) <= len(files["y"]) + 2048
    assert abs(_peak_hz(y, SR) - FREQ) < 2.0
    # The time origin is preserved: the click at 1 s is found at 1 s (within 1 ms).
    residual = np.abs(y[: len(files["y"])] - 0.5 * np.sin(2 * np.pi * FREQ * np.arange(len(files["y"])) / SR))
    assert abs(int(residual.argmax()) - SR) <= SR // 1000


def test_lossless_wav_is_bit_exact(files):
    np.testing.assert_array_equal(load_audio(files["wav"]), files["y"])


def test_mono_is_the_channel_mean_and_stereo_keeps_channels(files):
    both = load_audio(files["stereo"], mono=False)
    assert both.shape == (2, len(files["y"]))
    np.testing.assert_allclose(both[0], files["y"], atol=1e-6)
    assert np.abs(both[1]).max() == 0
    np.testing.assert_allclose(load_audio(files["stereo"]), files["y"] / 2, atol=1e-6)


def test_mono_file_with_mono_false_has_one_channel(files):
    assert load_audio(files["wav"], mono=False).shape == (1, len(files["y"]))


@pytest.mark.parametrize("sr", [16000, 22050, 48000])
def test_resampling_keeps_duration_and_pitch(files, sr):
    y = load_audio(files["flac"], sr=sr)
    assert abs(len(y) - 2.0 * sr) <= 2
    assert abs(_peak_hz(y, sr) - FREQ) < 2.0


@pytest.mark.parametrize("kind", ["wav", "mp3", "mp4"])
def test_offset_and_duration_cut_the_right_window(files, kind):
    y = load_audio(files[kind], offset=0.5, duration=1.0)
    assert len(y) == SR
    ref = 0.5 * np.sin(2 * np.pi * FREQ * (np.arange(SR) / SR + 0.5))
    click = int(np.abs(y - ref).argmax())
    assert abs(click - SR // 2) <= SR // 1000  # the 1 s click sits 0.5 s into the window


def test_duration_past_the_end_returns_what_is_there(files):
    y = load_audio(files["wav"], offset=1.5, duration=10.0)
    assert len(y) == SR // 2


def test_missing_file(tmp_path):
    with pytest.raises(AudioDecodeError, match="not found"):
        load_audio(tmp_path / "nope.mp3")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp3"
    path.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty"):
        load_audio(path)


def test_zero_sample_file(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(AudioDecodeError, match=r"empty \(0 samples\)"):
        load_audio(path)


@pytest.mark.parametrize("payload", [b"\x00garbage" * 500, b"ID3" + bytes(range(256)) * 20, b"RIFF\x00\x00"])
def test_corrupt_file(tmp_path, payload):
    path = tmp_path / "bad.mp3"
    path.write_bytes(payload)
    with pytest.raises(AudioDecodeError, match=str(path.name)):
        load_audio(path)


def test_truncated_mp3_decodes_what_survives(files, tmp_path):
    data = files["mp3"].read_bytes()
    path = tmp_path / "cut.mp3"
    path.write_bytes(data[: len(data) // 2])
    y = load_audio(path)
    assert 0.5 * SR < len(y) < 1.6 * SR


def test_video_without_audio(tmp_path):
    path = tmp_path / "silent_film.mp4"
    _write_video_only(path)
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        load_audio(path)


def test_offset_beyond_the_end(files):
    with pytest.raises(AudioDecodeError, match="offset"):
        load_audio(files["wav"], offset=10.0)


def test_is_a_value_error_for_generic_callers(tmp_path):
    with pytest.raises(ValueError):
        load_audio(tmp_path / "nope.wav")
