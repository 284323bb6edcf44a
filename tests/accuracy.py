"""Corpus-level scores of extracted music features against synthesis ground truth.

A plain helper (not a test module): feature tests and corpus checks share one definition
of "accurate", computed with mir_eval the way MIR papers report it.
"""

from __future__ import annotations

import numpy as np

from mv4all.schema import MusicFeatures

TEMPO_TOLERANCE = 0.04  # relative; octave errors (x2, x1/2) count as correct ("Acc2")
ONSET_WINDOW = 0.07  # seconds, mir_eval's default F-measure window


def tempo_ok(estimate: float, reference: float, tolerance: float = TEMPO_TOLERANCE) -> bool:
    """Within ``tolerance`` of the reference tempo or of its double or half."""
    if reference <= 0 or estimate <= 0:
        return False
    return any(abs(estimate - reference * m) <= tolerance * reference * m for m in (1.0, 2.0, 0.5))


def key_score(estimate: str, reference: str) -> float:
    """mir_eval's weighted key score (1 same, 0.5 fifth, 0.3 relative, 0.2 parallel); 0 if unparsable."""
    import mir_eval

    try:
        return float(mir_eval.key.weighted_score(reference, estimate))
    except ValueError:  # e.g. "unknown" for a silent clip
        return 0.0


def downbeat_f_measure(estimate: list[float], reference: list[float], window: float = ONSET_WINDOW) -> float:
    """mir_eval beat F-measure applied to downbeat times (no 5 s trimming)."""
    import mir_eval

    ref, est = np.asarray(reference, dtype=float), np.asarray(estimate, dtype=float)
    if ref.size == 0:
        return 1.0 if est.size == 0 else 0.0
    if est.size == 0:
        return 0.0
    return float(mir_eval.beat.f_measure(ref, est, f_measure_threshold=window))


def music_accuracy(pairs: list[tuple[MusicFeatures, dict]]) -> dict:
    """Mean scores over ``(features, truth)`` pairs; ``truth`` as returned by ``synthesize``.

    Returns ``tempo_ok_fraction`` (Acc2 at 4 %), ``key_weighted_score`` (mir_eval),
    ``downbeat_f_measure`` (70 ms window) and ``meter_ok_fraction`` (beats per bar).
    """
    if not pairs:
        raise ValueError("music_accuracy needs at least one (features, truth) pair")
    tempo, key, downbeat, meter = [], [], [], []
    for features, truth in pairs:
        tempo.append(tempo_ok(features.tempo, float(truth["tempo"])))
        key.append(key_score(features.key, truth["key"]))
        downbeat.append(downbeat_f_measure(features.downbeats, truth["downbeats"]))
        meter.append(features.beats_per_bar == int(truth["beats_per_bar"]))
    return {
        "tempo_ok_fraction": float(np.mean(tempo)),
        "key_weighted_score": float(np.mean(key)),
        "downbeat_f_measure": float(np.mean(downbeat)),
        "meter_ok_fraction": float(np.mean(meter)),
    }
