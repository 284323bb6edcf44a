"""builders.features + builders.sample.music: the extractor recovers what the synthesiser
put in (scored with mir_eval), records are valid and deterministic, and bad input fails
clearly or yields a valid record."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

try:  # tests/ is a package when it has __init__.py, a plain folder on sys.path otherwise
    from tests.accuracy import downbeat_f_measure, key_score, music_accuracy, tempo_ok
except ImportError:  # pragma: no cover
    from accuracy import downbeat_f_measure, key_score, music_accuracy, tempo_ok
from builders.features import MIN_DURATION, UNKNOWN_KEY, FeatureExtractor
from builders.sample.music import synthesize, write_mp3
from builders.sample.specs import default_specs
from mv4all.schema import MusicFeatures, Track

SR = 44100
# C major 120 4/4 pop, E minor 75 3/4 folk, A major 160 3/4 country, F minor 176 4/4 chiptune
CLIPS = (0, 3, 12, 16)
DURATION = 20.0  # shorter than Music4All's 30 s to keep the file fast; long enough for the DBN


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor()


@pytest.fixture(scope="module")
def specs():
    return default_specs(18)


@pytest.fixture(scope="module")
def extracted(extractor, specs):
    out = {}
    for i in CLIPS:
        audio, truth = synthesize(specs[i], duration=DURATION)
        out[i] = (audio, truth, extractor.extract(audio))
    return out


# --------------------------------------------------------------------------- synthesis


def test_synthesis_is_deterministic_30s_and_fast(specs):
    start = time.perf_counter()
    a, truth_a = synthesize(specs[1])
    elapsed = time.perf_counter() - start
    b, truth_b = synthesize(specs[1])
    assert a.dtype == np.float32 and a.shape == (30 * SR,)
    np.testing.assert_array_equal(a, b)
    assert truth_a == truth_b
    assert 0.5 < np.abs(a).max() <= 1.0
    assert elapsed < 2.0  # ~0.15 s warm; generous for a loaded CI machine


def test_truth_describes_the_spec(specs):
    for spec in (specs[3], specs[15]):  # E minor 3/4, C# minor 4/4
        _, truth = synthesize(spec, duration=12.0)
        assert truth["key"] == f"{spec.tonic} {spec.mode}"
        assert truth["tempo"] == spec.tempo and truth["beats_per_bar"] == spec.beats_per_bar
        period = 60.0 / spec.tempo
        assert np.allclose(np.diff(truth["beats"]), period, atol=1e-5)
        assert np.allclose(np.diff(truth["downbeats"]), period * spec.beats_per_bar, atol=1e-5)
        assert set(truth["downbeats"]) <= set(truth["beats"]) and max(truth["beats"]) < 12.0
        chords = truth["chords"]
        assert chords[0]["start"] == 0 and chords[-1]["end"] == pytest.approx(12.0)
        tonic_label = chords[0]["label"]
        assert tonic_label.endswith(":min") and chords[-1]["label"] == tonic_label  # starts and ends on i
        assert all(c["label"].split(":")[1] in {"maj", "min"} for c in chords)


def test_different_seeds_give_different_music(specs):
    a, _ = synthesize(specs[0], duration=5.0)
    b, _ = synthesize(specs[0].__class__(**{**specs[0].as_dict(), "seed": 12345}), duration=5.0)
    assert not np.array_equal(a, b)


def test_write_mp3_round_trips_to_30_seconds(tmp_path, specs):
    from mv4all.audio import load_audio

    audio, _ = synthesize(specs[0])
    path = tmp_path / "clip.mp3"
    write_mp3(path, audio, SR)
    decoded = load_audio(path)
    assert len(decoded) == len(audio)
    assert np.corrcoef(decoded, audio)[0, 1] > 0.98  # aligned, no encoder delay left


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("clip", CLIPS)
def test_clip_features_match_truth(extracted, clip):
    _, truth, features = extracted[clip]
    assert tempo_ok(features.tempo, truth["tempo"]), (features.tempo, truth["tempo"])
    assert key_score(features.key, truth["key"]) == 1.0, (features.key, truth["key"])
    assert features.beats_per_bar == truth["beats_per_bar"]
    assert downbeat_f_measure(features.downbeats, truth["downbeats"]) >= 0.9


def test_accuracy_helper_scores_known_cases():
    truth = {"tempo": 120.0, "key": "A minor", "downbeats": [0.0, 2.0, 4.0], "beats_per_bar": 4}
    base = dict(
        duration=6.0, tempo=60.0, tempo_strength=0.5, beats_per_bar=3, beats=[], downbeats=[0.01, 2.0, 5.0],
        key="C major", key_confidence=0.9, chords=[], librosa=_dummy_librosa(),
    )
    scores = music_accuracy([(MusicFeatures(**base), truth)])
    assert scores["tempo_ok_fraction"] == 1.0  # half tempo counts
    assert scores["key_weighted_score"] == pytest.approx(0.3)  # relative major/minor (mir_eval's weights)
    assert scores["downbeat_f_measure"] == pytest.approx(2 / 3)
    assert scores["meter_ok_fraction"] == 0.0


def _dummy_librosa():
    from mv4all.schema import LibrosaDescriptors

    return LibrosaDescriptors(
        rms_mean=0, rms_std=0, loudness_db=0, dynamic_range_db=0, spectral_centroid_hz=0, spectral_bandwidth_hz=0,
        spectral_rolloff_hz=0, spectral_flatness=0, zero_crossing_rate=0, onset_rate=0, percussive_ratio=0,
        chroma_mean=[0.0] * 12,
    )


# --------------------------------------------------------------------------- record shape


def test_record_is_valid_compact_and_consistent(extracted):
    audio, truth, f = extracted[3]
    assert MusicFeatures.model_validate_json(f.model_dump_json()) == f
    assert f.duration == DURATION
    assert 0.0 <= f.tempo_strength <= 1.0 and 0.0 <= f.key_confidence <= 1.0
    assert f.downbeats == [b.time for b in f.beats if b.number == 1]
    assert {b.number for b in f.beats} == set(range(1, f.beats_per_bar + 1))
    assert all(t1 > t0 for t0, t1 in zip([b.time for b in f.beats], [b.time for b in f.beats][1:]))
    assert f.chords[0].start == 0.0 and f.chords[-1].end <= f.duration
    assert all(c.end > c.start for c in f.chords)
    lib = f.librosa
    assert len(lib.chroma_mean) == 12 and all(0 <= v <= 1 for v in lib.chroma_mean)
    assert lib.loudness_db < 0 and lib.dynamic_range_db > 0 and lib.onset_rate > 0
    assert 0 < lib.percussive_ratio < 1 and 0 < lib.spectral_flatness < 1
    assert 0 < lib.spectral_centroid_hz < SR / 2 and lib.spectral_rolloff_hz > lib.spectral_centroid_hz / 2
    # E minor: E (4) and B (11) are among the strongest pitch classes
    assert {4, 11} & set(np.argsort(lib.chroma_mean)[-3:].tolist())
    for value in _floats(f.model_dump()):
        assert value == round(value, 6)  # rounded: compact, stable output


def _floats(obj):
    if isinstance(obj, float):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _floats(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _floats(v)


def test_track_scores_pass_through(extractor):
    audio, _ = synthesize(default_specs(1)[0], duration=4.0)
    track = Track(id="x" * 16, artist="a", song="s", energy=0.71234567, valence=0.2, danceability=None)
    f = extractor.extract(audio, track)
    assert (f.energy, f.valence, f.danceability) == (0.7123, 0.2, None)
    g = extractor.extract(audio)
    assert (g.energy, g.valence, g.danceability) == (None, None, None)


# --------------------------------------------------------------------------- determinism


def test_same_input_gives_identical_output(extractor, specs):
    audio, _ = synthesize(specs[7], duration=8.0)
    first = extractor.extract(audio)
    assert extractor.extract(audio) == first
    assert extractor.extract(audio.copy()).model_dump_json() == first.model_dump_json()


# --------------------------------------------------------------------------- single pass, exact fast steps


def test_single_pass_runs_no_beat_network(extractor):
    """Tempo comes from the downbeat network's beat evidence: LLark's separate beat network is gone."""
    from madmom.features.beats import RNNBeatProcessor

    from builders.features import _runtimes

    held = [v for v in vars(extractor).values() if isinstance(v, RNNBeatProcessor)]
    assert not held and not hasattr(extractor, "beat_act")
    sessions = [r for p in (extractor.downbeat_act, extractor.key_proc, extractor.chord_feat) for r in _runtimes(p)]
    assert len(sessions) == 10  # 8 downbeat BLSTMs, key CNN, chord CNN (LLark's recipe: 18)
    audio, _ = synthesize(default_specs(1)[0], duration=4.0)
    extractor.extract(audio)
    assert "beat_rnn" not in extractor.last_timings and "downbeat_rnn" in extractor.last_timings


@pytest.mark.parametrize("bpm", [96.0, 140.0])
def test_single_pass_tempo_of_a_click_track(extractor, bpm):
    t = np.arange(int(12.0 * SR)) / SR
    y = np.zeros_like(t, dtype=np.float32)
    for k, onset in enumerate(np.arange(0.0, 12.0, 60.0 / bpm)):
        i = int(onset * SR)
        n = min(int(0.03 * SR), len(y) - i)
        pitch = 1760.0 if k % 4 == 0 else 880.0
        y[i : i + n] += (np.sin(2 * np.pi * pitch * t[:n]) * np.exp(-t[:n] * 150)).astype(np.float32)
    f = extractor.extract(0.5 * y)
    assert abs(f.tempo - bpm) <= 0.02 * bpm, f.tempo


def test_batched_network_input_is_madmoms_exactly(extractor):
    from madmom.audio.signal import Signal

    from builders.madmom_fast import spectral_input

    audio, _ = synthesize(default_specs(3)[2], duration=3.0)
    audio = audio[: len(audio) - 123]  # not a whole number of hops
    ours = spectral_input(extractor._plan, audio)
    madmom = extractor.downbeat_act.processors[0](Signal(audio, sample_rate=SR, num_channels=1))
    assert ours.dtype == madmom.dtype and ours.shape == madmom.shape
    np.testing.assert_array_equal(ours, madmom)


def test_key_and_chord_spectrograms_are_madmoms_exactly(extractor):
    from madmom.audio.signal import Signal

    from builders.features import _run_chain
    from builders.madmom_fast import cnn_spectrograms

    assert extractor._cnn_plans is not None  # the fast path is in use
    audio, _ = synthesize(default_specs(3)[2], duration=3.0)
    for clip in (audio, audio[: len(audio) - 4567]):  # also not a whole number of key frames
        signal = Signal(clip, sample_rate=SR, num_channels=1)
        ours = cnn_spectrograms(list(extractor._cnn_plans), clip)
        for proc, spec in zip((extractor.key_proc, extractor.chord_feat), ours, strict=True):
            madmom = _run_chain(proc.processors[:4], signal)
            assert spec.dtype == madmom.dtype and spec.shape == madmom.shape
            np.testing.assert_array_equal(spec, madmom)
    key_in, chord_in = ours
    np.testing.assert_array_equal(_run_chain(extractor._cnn_plans[0][-1], key_in), extractor.key_proc(signal))


def test_hpss_energies_are_librosas():
    import librosa

    from builders.madmom_fast import hpss_energies

    rng = np.random.default_rng(1)
    S = (rng.gamma(0.5, size=(64, 300)) ** 2).astype(np.float32)
    S[:, 40:60] = 0  # silent stretch: librosa's zero-energy branch of the masks
    harmonic, percussive = librosa.decompose.hpss(S, kernel_size=(17, 17))
    assert hpss_energies(S, kernel_size=17) == (harmonic.sum(), percussive.sum())


def test_fast_viterbi_decodes_madmoms_paths(extractor):
    from madmom.features.downbeats import DBNDownBeatTrackingProcessor

    from builders.madmom_fast import BarViterbi

    assert all(isinstance(h, BarViterbi) for h in extractor.downbeat_proc.hmms)
    reference = DBNDownBeatTrackingProcessor(beats_per_bar=[3, 4], fps=100)
    audio, _ = synthesize(default_specs(4)[3], duration=8.0)
    act = extractor.downbeat_activations(audio)
    rng = np.random.default_rng(0)
    noise = rng.uniform(0.001, 0.3, size=(500, 2)).astype(np.float32) / 2  # no structure at all
    for obs in (act, act[:20], noise):
        for fast, slow in zip(extractor.downbeat_proc.hmms, reference.hmms, strict=True):
            path, log_p = fast.viterbi(obs)
            want, want_log_p = slow.viterbi(obs)
            np.testing.assert_array_equal(path, want)
            assert log_p == pytest.approx(want_log_p, rel=1e-9)
    np.testing.assert_array_equal(extractor.downbeat_proc(act), reference(act))


def test_rolloff_is_librosas():
    import librosa

    from builders.features import librosa_descriptors

    audio, _ = synthesize(default_specs(2)[1], duration=3.0)
    S = np.abs(librosa.stft(audio, n_fft=2048, hop_length=512, center=True))
    want = librosa.feature.spectral_rolloff(S=S, sr=SR, roll_percent=0.85)[0].mean()
    assert librosa_descriptors(audio, SR).spectral_rolloff_hz == round(float(want), 1)


def test_extract_file_decodes_and_matches(extractor, extracted, tmp_path):
    audio, truth, from_array = extracted[16]
    path = tmp_path / "clip.mp3"
    write_mp3(path, audio, SR)
    from_file = extractor.extract_file(path)
    assert from_file.duration == from_array.duration
    assert from_file.key == from_array.key and from_file.beats_per_bar == from_array.beats_per_bar
    assert abs(from_file.tempo - from_array.tempo) < 1.0


# --------------------------------------------------------------------------- bad input


def test_nan_audio_is_rejected(extractor):
    y = np.zeros(3 * SR, dtype=np.float32)
    y[100] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        extractor.extract(y)


def test_too_short_audio_is_rejected(extractor):
    with pytest.raises(ValueError, match="too short"):
        extractor.extract(np.zeros(int(0.5 * SR), dtype=np.float32))


def test_multichannel_garbage_shape_is_rejected(extractor):
    with pytest.raises(ValueError, match="mono"):
        extractor.extract(np.zeros((16, 16, SR), dtype=np.float32))


def test_silence_gives_an_empty_but_valid_record(extractor):
    f = extractor.extract(np.zeros(5 * SR, dtype=np.float32))
    assert (f.tempo, f.tempo_strength, f.beats_per_bar, f.beats, f.downbeats) == (0.0, 0.0, 0, [], [])
    assert f.key == UNKNOWN_KEY and f.key_confidence == 0.0
    assert [c.label for c in f.chords] == ["N"] and f.librosa.loudness_db == -120.0
    assert f.librosa.onset_rate == 0.0 and f.librosa.chroma_mean == [0.0] * 12


def test_one_second_clip_gives_a_valid_record(extractor):
    audio, _ = synthesize(default_specs(1)[0], duration=MIN_DURATION)
    f = extractor.extract(audio)
    assert f.duration == MIN_DURATION
    assert f.beats_per_bar in (0, 3, 4)
    MusicFeatures.model_validate(f.model_dump())


def test_stereo_and_int16_input_are_accepted(extractor):
    audio, _ = synthesize(default_specs(1)[0], duration=3.0)
    stereo = extractor.extract(np.stack([audio, audio]))
    mono = extractor.extract(audio)
    assert stereo == mono
    pcm = (audio * 32767).astype(np.int16)
    assert extractor.extract(pcm).key == mono.key


# --------------------------------------------------------------------------- threads


def test_limit_threads_pins_every_session_without_importing_torch():
    code = """
import os, sys
from builders.features import FeatureExtractor, limit_threads, _runtimes
limit_threads()
assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "1"
fx = FeatureExtractor()
runtimes = [r for p in (fx.downbeat_act, fx.key_proc, fx.chord_feat) for r in _runtimes(p)]
assert len(runtimes) >= 4, len(runtimes)
assert {r.session_options.intra_op_num_threads for r in runtimes} == {1}
assert "torch" not in sys.modules
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
