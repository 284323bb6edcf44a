"""The clip's audio in its MP4: add an AAC stream before the first packet is written, then
encode the first ``duration`` seconds of the source file into it after the video."""

from __future__ import annotations

from pathlib import Path


def _open_audio(container, audio_path: Path):
    """Open the audio file and add an AAC stream for it (before any packet is written)."""
    import av

    src = av.open(str(audio_path))
    if not src.streams.audio:
        src.close()
        return None
    out = container.add_stream("aac", rate=44100)
    out.layout = "stereo"
    return src, src.streams.audio[0], out


def _mux_audio(container, audio, duration: float) -> bool:
    """Encode the first ``duration`` seconds of the opened audio into its AAC stream."""
    import av

    src, ain, out = audio
    try:
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=44100)
        limit = int(duration * 44100)
        written = 0

        def emit(frames) -> None:
            nonlocal written
            for rf in frames:
                if written >= limit:
                    return
                rf.pts = written
                written += rf.samples
                for packet in out.encode(rf):
                    container.mux(packet)

        for frame in src.decode(ain):
            frame.pts = None
            emit(resampler.resample(frame))
            if written >= limit:
                break
        emit(resampler.resample(None))
        for packet in out.encode(None):
            container.mux(packet)
        return written > 0
    finally:
        src.close()
