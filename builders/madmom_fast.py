"""madmom's (and librosa's) own numbers, computed faster: the networks' spectrograms, the downbeat DBN's
Viterbi and HPSS energies.

All are exact re-implementations checked against the originals (``tests/test_features.py``), used by
``builders.features.FeatureExtractor``; each plan builder returns ``None`` when madmom's objects do not
have the layout it relies on, and the caller then keeps madmom's code.

**Spectrograms** (:func:`spectral_plan`, :func:`spectral_input`, :func:`cnn_plan`,
:func:`cnn_spectrograms`): madmom's STFT loops over frames in Python, one complex FFT each (~9,000 per
30 s clip for the downbeat network's three frame sizes, ~450 more for the key and chord CNNs); here the
frames are a strided view and the FFT runs batched, in small blocks through preallocated buffers
(:func:`stft_magnitudes`), with the same dtypes, so the networks' inputs are bit-identical. The key CNN's
frames (8192 samples at 5 fps) are every other frame of the chord CNN's (8192 at 10 fps), so one STFT
serves both.

**Viterbi** (:func:`fast_bar_hmm`): madmom's ``DBNDownBeatTrackingProcessor`` decodes one
``HiddenMarkovModel`` per bar length with a generic sparse Viterbi: every frame visits every state
(~26,000 for 3/4 plus 4/4 at madmom's 60 tempi), ~0.5 s for a 30 s clip, the largest single cost of
the feature stage. The bar state space is a set of chains: for beat ``b`` and tempo ``j`` (interval
``L_j`` frames) the states ``first[b, j] .. first[b, j] + L_j - 1`` advance one per frame with
probability 1, and only a chain's first state has a choice of predecessors (the last states of the
previous beat, weighted by a banded tempo-change matrix). So the best score of a chain's last state
is the score of entering it ``L_j - 1`` frames earlier plus a sum of observation densities (from
cumulative sums), and only entries need deciding, per (beat, tempo, frame). Entries ``L_min`` (~28)
frames apart are independent, so they are decided a block of frames at a time with numpy, one band
of the tempo-change matrix per step; back-pointers are re-derived only along the final path. ~3x
faster than madmom's compiled decoder.

The path is madmom's up to floating-point summation order (on the sample corpus paths and log
probabilities were identical; ties go to the lowest state index, as in madmom).
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["BarViterbi", "cnn_plan", "cnn_spectrograms", "fast_bar_hmm", "spectral_input", "hpss_energies",
           "spectral_plan", "stft_magnitudes"]

_SR = 44100  # madmom's networks' sample rate


class BarViterbi:
    """Drop-in for one of ``DBNDownBeatTrackingProcessor.hmms``: same ``viterbi`` result, faster."""

    def __init__(self, hmm, first: np.ndarray, lengths: np.ndarray, beat_len: np.ndarray, log_trans: np.ndarray):
        self.transition_model, self.observation_model = hmm.transition_model, hmm.observation_model
        self.log_prior = float(np.log(hmm.initial_distribution[0]))
        self.first, self.lengths, self.beat_len = first, lengths, beat_len
        self.log_trans_to = np.ascontiguousarray(log_trans.transpose(0, 2, 1))  # [beat, to tempo, from tempo]
        n_tempi = len(lengths)
        self.bands = []  # (d, [beat, to tempo j, 1]: log P(tempo j + d -> j)) for every d that occurs
        for d in range(-n_tempi + 1, n_tempi):
            j = np.arange(max(0, -d), min(n_tempi, n_tempi - d))
            diag = np.full((first.shape[0], n_tempi, 1), -np.inf)
            diag[:, j, 0] = log_trans[:, j + d, j]
            if np.isfinite(diag).any():
                self.bands.append((d, diag))
        self.reach = max(abs(d) for d, _ in self.bands)
        n_beats, n_tempi = first.shape
        states = np.arange(self.transition_model.num_states)
        chain = np.searchsorted(first.ravel(), states, side="right") - 1  # chains are contiguous, in order
        self._beat, self._tempo = np.divmod(chain, n_tempi)
        self._pos = states - first.ravel()[chain]

    def viterbi(self, observations: np.ndarray) -> tuple[np.ndarray, float]:
        """Best state path and its log probability, as ``HiddenMarkovModel.viterbi``."""
        dens = self.observation_model.log_densities(observations)
        n_frames = len(dens)
        n_beats, n_tempi = self.first.shape
        lengths, beat_len = self.lengths, self.beat_len
        pad = int(lengths.max())  # frames before 0: zero density, every chain "entered" with the prior
        cum = np.zeros((n_frames + 2 * pad + 1, 3))  # cum[x]: density summed over padded frames < x
        np.cumsum(dens, axis=0, out=cum[pad + 1 : n_frames + pad + 1])
        cum[n_frames + pad + 1 :] = cum[n_frames + pad]  # chains that would end after the clip: never used
        cols = np.where(np.arange(n_beats) == 0, 2, 1)  # beat 0 scores downbeats, the others beats
        taus = np.arange(-pad, n_frames)[None, :]
        exit_sum = {}  # density along a chain from the frame after its entry to its last state
        for col in set(cols.tolist()):
            c = cum[:, col]
            at = taus + pad
            exit_sum[col] = (c[at + beat_len[:, None]] - c[at + 1]
                             + cum[at + lengths[:, None], 0] - cum[at + beat_len[:, None], 0])
        entry = np.full((n_beats, n_tempi, n_frames + pad), self.log_prior)
        exits = np.empty_like(entry)  # score at a chain's last state, indexed by the chain's entry frame
        for b in range(n_beats):
            exits[b, :, :pad] = entry[b, :, :pad] + exit_sum[cols[b]][:, :pad]
        step = int(lengths.min())
        tempi = np.arange(n_tempi)[:, None]
        prev_beat = (np.arange(n_beats) - 1) % n_beats
        reach = self.reach
        shifted = np.full((n_beats, n_tempi + 2 * reach, step), -np.inf)  # exits by source tempo, padded
        best = np.empty((n_beats, n_tempi, step))
        for t0 in range(0, n_frames, step):
            tt = np.arange(t0, min(t0 + step, n_frames))
            n = len(tt)
            # exit scores of the previous beat's chains that end at frames tt - 1: [beat, from tempo, frame]
            src = tt - lengths[:, None] + pad
            shifted[:, reach : reach + n_tempi, :n] = exits[prev_beat[:, None, None], tempi, src]
            best[..., :n] = -np.inf
            for d, diag in self.bands:  # tempo change i = j + d, one band of the transition matrix at a time
                np.maximum(best[..., :n], shifted[:, reach + d : reach + d + n_tempi, :n] + diag, out=best[..., :n])
            window = slice(t0 + pad, t0 + n + pad)
            entry[:, :, window] = best[..., :n] + dens[tt][:, cols].T[:, None, :]
            for b in range(n_beats):
                exits[b, :, window] = entry[b, :, window] + exit_sum[cols[b]][:, window]
        final = self._final_scores(entry, cum, cols, n_frames, pad)
        state = int(final.argmax())
        log_prob = float(final[state])
        if not np.isfinite(log_prob):
            warnings.warn("-inf log probability during Viterbi decoding cannot find a valid path", RuntimeWarning,
                          stacklevel=2)
            return np.empty(0, dtype=np.uint32), log_prob
        return self._backtrack(state, exits, n_frames, pad), log_prob

    def _final_scores(self, entry, cum, cols, n_frames: int, pad: int) -> np.ndarray:
        """Score of every state at the last frame (entered ``pos`` frames before it)."""
        b, j, pos = self._beat, self._tempo, self._pos
        at = n_frames - 1 - pos + pad  # padded index of the entry frame
        c = cum[:, 0]
        beat_part = cum[at + np.minimum(pos + 1, self.beat_len[j]), cols[b]] - cum[at + 1, cols[b]]
        rest = np.where(pos >= self.beat_len[j], c[at + pos + 1] - c[at + np.minimum(self.beat_len[j], pos + 1)], 0.0)
        return entry[b, j, at] + beat_part + rest

    def _backtrack(self, state: int, exits: np.ndarray, n_frames: int, pad: int) -> np.ndarray:
        """The path into ``state`` at the last frame; each chain's predecessor is re-derived from the exit scores
        (the same sums as in the forward pass, so the same first maximum) instead of storing back-pointers."""
        path = np.empty(n_frames, dtype=np.uint32)
        n_beats = self.first.shape[0]
        b, j = int(self._beat[state]), int(self._tempo[state])
        end = n_frames  # frames [entered, end) lie on chain (b, j)
        entered = n_frames - 1 - int(self._pos[state])
        while True:
            lo = max(entered, 0)
            path[lo:end] = self.first[b, j] + np.arange(lo - entered, end - entered)
            if entered <= 0:
                return path
            b = (b - 1) % n_beats
            i = int(np.argmax(exits[b, np.arange(len(self.lengths)), entered - self.lengths + pad]
                              + self.log_trans_to[(b + 1) % n_beats, j]))
            j, end = i, entered
            entered -= int(self.lengths[i])


def fast_bar_hmm(hmm) -> BarViterbi | None:
    """A :class:`BarViterbi` for one of madmom's bar HMMs, or ``None`` if its layout is not the expected one."""
    try:
        st, tm, om = hmm.transition_model.state_space, hmm.transition_model, hmm.observation_model
        first, last = np.asarray(st.first_states), np.asarray(st.last_states)
        lengths = last[0] - first[0] + 1
        prior = np.asarray(hmm.initial_distribution)
        n_states = tm.num_states
        ok = (first.ndim == 2 and np.all(last - first + 1 == lengths) and lengths.min() >= 1
              and np.all(first.ravel()[1:] == last.ravel()[:-1] + 1) and first[0, 0] == 0
              and last[-1, -1] == n_states - 1 and np.all(prior == prior[0])
              and type(om).__name__ == "RNNDownBeatTrackingObservationModel")
        if not ok:
            return None
        ptr, prev, logp = tm.pointers, tm.states, tm.log_probabilities
        is_first = np.zeros(n_states, dtype=bool)
        is_first[first.ravel()] = True
        inner = np.flatnonzero(~is_first)  # must have one predecessor, the state before, with probability 1
        if not (np.all(ptr[inner + 1] - ptr[inner] == 1) and np.all(prev[ptr[inner]] == inner - 1)
                and np.all(logp[ptr[inner]] == 0)):
            return None
        n_beats, n_tempi = first.shape
        log_trans = np.full((n_beats, n_tempi, n_tempi), -np.inf)
        for b in range(n_beats):
            for j, s in enumerate(first[b]):
                src = prev[ptr[s] : ptr[s + 1]]
                i = np.searchsorted(last[b - 1], src)
                if np.any(np.diff(src) <= 0) or np.any(last[b - 1][np.minimum(i, n_tempi - 1)] != src):
                    return None  # predecessors must be last states of the previous beat, in order
                log_trans[b, i, j] = logp[ptr[s] : ptr[s + 1]]
        # observation pointers: each chain starts with beat_len "beat" states (2 on beat 0, else 1), then 0s
        beat_len = np.array([int(np.sum(om.pointers[first[0, j] : last[0, j] + 1] > 0)) for j in range(n_tempi)])
        for b in range(n_beats):
            for j in range(n_tempi):
                want = np.r_[np.full(beat_len[j], 2 if b == 0 else 1), np.zeros(lengths[j] - beat_len[j])]
                if not np.array_equal(om.pointers[first[b, j] : last[b, j] + 1], want) or beat_len[j] < 1:
                    return None
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return BarViterbi(hmm, first, lengths, beat_len, log_trans)


def spectral_plan(pre) -> tuple | None:
    """Settings to compute the downbeat network's input batched, or ``None`` (use madmom's chain).

    madmom's pre-processor is ``(SignalProcessor, ParallelProcessor(branches), np.hstack)`` with
    each branch ``(FramedSignal, STFT, log filterbank, log10(mul*x+add), positive diff)``; its
    STFT loops over frames in Python (one complex FFT each, ~9,000 per clip). The filterbanks
    come from running each branch on a short probe, so they are madmom's own.
    """
    from madmom.audio.signal import FramedSignalProcessor, Signal, SignalProcessor
    from madmom.audio.spectrogram import (
        FilteredSpectrogramProcessor,
        LogarithmicSpectrogramProcessor,
        SpectrogramDifferenceProcessor,
        _diff_frames,
    )
    from madmom.audio.stft import ShortTimeFourierTransformProcessor

    kinds = (FramedSignalProcessor, ShortTimeFourierTransformProcessor, FilteredSpectrogramProcessor,
             LogarithmicSpectrogramProcessor, SpectrogramDifferenceProcessor)
    try:
        sig, multi, stack = pre.processors
        if not isinstance(sig, SignalProcessor) or stack is not np.hstack:
            return None
        if (sig.sample_rate, sig.num_channels, sig.start, sig.stop, sig.norm, sig.gain) != (
                _SR, 1, None, None, False, 0.0):
            return None
        probe = Signal(np.zeros(_SR // 10, np.float32), sample_rate=_SR, num_channels=1)
        plan = []
        for branch in multi.processors:
            frames, stft, filt, log, diff = procs = branch.processors
            hop = _SR / frames.fps
            if not all(isinstance(p, k) for p, k in zip(procs, kinds, strict=True)) or hop != int(hop):
                return None
            if (frames.origin, frames.end, frames.num_frames, stft.window, stft.fft_size, stft.circular_shift,
                    stft.include_nyquist, stft.fft_window, log.log, diff.diff_frames, diff.diff_max_bins,
                    diff.positive_diffs, diff.stack_diffs) != (0, "normal", None, np.hanning, None, False, False,
                                                               None, np.log10, None, None, True, np.hstack):
                return None
            size = int(frames.frame_size)
            bank = np.asarray(filt(stft(frames(probe))).filterbank, dtype=np.float32)
            lag = _diff_frames(diff.diff_ratio, hop_size=hop, frame_size=size, window=np.hanning)
            plan.append((size, int(hop), np.hanning(size), bank, lag, log.mul, log.add))
    except (AttributeError, TypeError, ValueError):
        return None
    return tuple(plan)


def spectral_input(plan: tuple, y: np.ndarray, block: int = 64) -> np.ndarray:
    """The downbeat network's input from :func:`spectral_plan`: madmom's numbers, batched."""
    parts = []
    for size, hop, window, bank, lag, mul, add in plan:
        logs = np.log10(mul * (stft_magnitudes(y, size, hop, window, block) @ bank) + add)
        diff = np.zeros_like(logs)
        diff[lag:] = np.maximum(logs[lag:] - logs[:-lag], 0)
        parts.append(np.hstack((logs, diff)))
    return np.hstack(parts)


def stft_magnitudes(y: np.ndarray, size: int, hop: int, window: np.ndarray, block: int = 64) -> np.ndarray:
    """madmom's ``Spectrogram`` of float32 samples ``y`` (frames of ``size`` every ``hop`` samples), batched.

    Frame ``i`` is centred on sample ``i * hop`` and zero-padded at the edges, as madmom's ``signal_frame``;
    float32 frames times the float64 window go through a float64 FFT and are stored as complex64 before the
    magnitude, as madmom's STFT does, so the result is bit-identical. ``block`` frames at a time go through
    preallocated buffers: small blocks keep the windowed frames in cache for the FFT (64 was ~20 % faster than
    512 on 1024-4096-sample frames).
    """
    from numpy.lib.stride_tricks import sliding_window_view

    n, half = -(-len(y) // hop), size // 2
    padded = np.zeros(n * hop + size, dtype=np.float32)
    padded[half : half + len(y)] = y
    frames = sliding_window_view(padded, size)[::hop][:n]
    spec = np.empty((n, half), dtype=np.float32)
    block = max(1, min(block, n))
    windowed = np.empty((block, size))
    fft = np.empty((block, half + 1), dtype=np.complex128)
    stored = np.empty((block, half), dtype=np.complex64)
    for i in range(0, n, block):
        m = min(block, n - i)
        np.multiply(frames[i : i + m], window, out=windowed[:m])
        np.fft.rfft(windowed[:m], axis=1, out=fft[:m])
        stored[:m] = fft[:m, :half]
        np.abs(stored[:m], out=spec[i : i + m])
    return spec


def cnn_plan(proc) -> tuple | None:
    """How to compute a madmom CNN processor's spectrogram batched, or ``None`` (run madmom's chain).

    The key and chord processors (``CNNKeyRecognitionProcessor``, ``CNNChordFeatureProcessor``) start with
    ``(SignalProcessor, FramedSignalProcessor, STFT, LogarithmicFilteredSpectrogramProcessor)`` and then run
    their network on the result. Returns ``(size, hop, window, bank, mul, add, rest)``: frame size and hop in
    samples, the FFT window, madmom's own filterbank (from a probe), the log scaling, and the processors after
    the spectrogram.
    """
    from madmom.audio.signal import FramedSignalProcessor, Signal, SignalProcessor
    from madmom.audio.spectrogram import LogarithmicFilteredSpectrogramProcessor
    from madmom.audio.stft import ShortTimeFourierTransformProcessor

    try:
        sig, frames, stft, spec, *rest = proc.processors
        kinds = (SignalProcessor, FramedSignalProcessor, ShortTimeFourierTransformProcessor,
                 LogarithmicFilteredSpectrogramProcessor)
        if not all(isinstance(p, k) for p, k in zip((sig, frames, stft, spec), kinds, strict=True)) or not rest:
            return None
        if (sig.sample_rate, sig.num_channels, sig.start, sig.stop, sig.norm, sig.gain) != (_SR, 1, None, None,
                                                                                              False, 0.0):
            return None
        hop = _SR / frames.fps if frames.fps is not None else frames.hop_size
        if hop != int(hop) or (frames.origin, frames.end, frames.num_frames) != (0, "normal", None):
            return None
        if (stft.window, stft.fft_size, stft.circular_shift, stft.include_nyquist) != (np.hanning, None, False, False):
            return None
        size = int(frames.frame_size)
        probe = Signal(np.zeros(_SR // 2, np.float32), sample_rate=_SR, num_channels=1)
        bank = np.asarray(spec(stft(frames(probe))).filterbank, dtype=np.float32)
    except (AttributeError, TypeError, ValueError):
        return None
    return size, int(hop), np.hanning(size), bank, spec.mul, spec.add, tuple(rest)


def cnn_spectrograms(plans: list[tuple], y: np.ndarray) -> list[np.ndarray]:
    """The log-filtered spectrograms of several :func:`cnn_plan` plans, madmom's numbers, sharing FFTs.

    madmom's key CNN (8192-sample frames at 5 fps) and chord CNN (8192 at 10 fps) frame the signal alike,
    so every key frame is a chord frame (frame ``i`` at 5 fps is frame ``2 i`` at 10 fps): one STFT serves both.
    """
    mags: dict[tuple[int, int], np.ndarray] = {}  # (frame size, hop) -> magnitudes
    out: list[np.ndarray] = [np.empty(0)] * len(plans)
    for k in sorted(range(len(plans)), key=lambda k: plans[k][1]):  # finest hop first
        size, hop, window, bank, mul, add, _ = plans[k]
        base = next((h for s, h in mags if s == size and hop % h == 0), None)
        if base is None:
            base = hop
            mags[size, hop] = stft_magnitudes(y, size, hop, window)
        spec = mags[size, base]
        if base != hop:
            spec = np.ascontiguousarray(spec[:: hop // base][: -(-len(y) // hop)])
        out[k] = np.log10(mul * (spec @ bank) + add)
    return out


def hpss_energies(S: np.ndarray, kernel_size: int = 17) -> tuple[np.floating, np.floating]:
    """Total energy of ``librosa.decompose.hpss(S, kernel_size=kernel_size)``'s harmonic and percussive parts.

    librosa's median filters (``scipy.ndimage.median_filter``, reflect mode) are ~3x slower than taking the
    middle element of each window with ``np.partition``; a median of an odd window is one of its elements, so
    the filtered arrays are identical, and the masks and sums are librosa's own code and operations.
    """
    import librosa

    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    harm, perc = _median_filter(S, kernel_size, axis=-1), _median_filter(S, kernel_size, axis=-2)
    mask_harm = librosa.util.softmask(harm, perc, power=2.0, split_zeros=True)
    mask_perc = librosa.util.softmask(perc, harm, power=2.0, split_zeros=True)
    return (S * mask_harm).sum(), (S * mask_perc).sum()


def _median_filter(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """``scipy.ndimage.median_filter`` with an odd ``size`` along one axis and ``mode="reflect"``."""
    from numpy.lib.stride_tricks import sliding_window_view

    half = size // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (half, half)
    windows = sliding_window_view(np.pad(x, pad, mode="symmetric"), size, axis=axis)  # scipy's reflect
    return np.partition(windows, half, axis=-1)[..., half]
