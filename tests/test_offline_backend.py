"""The offline backend: deterministic, grounded in measurements, honest, never copying lyrics.

Fixtures are built by hand (no madmom, no video decoding)."""

from __future__ import annotations

import re

import pytest

from builders.llm import available_backends, get_backend
from builders.llm.offline import OfflineBackend, limit_lyric_overlap, longest_shared_run, pretty_chord
from builders.sample.lyrics import write_lyrics
from builders.sample.specs import default_specs, with_overrides
from builders.stages import (
    LLM_STAGES,
    LYRICS_UNDERSTANDING,
    MUSIC_CAPTION,
    MV_DESCRIPTION,
    UNIFIED_MUSIC_CAPTION,
    Backend,
    StageInput,
    params_hash,
)
from builders.video.records import FrameStats, VisualStats
from mv4all.schema import (
    Beat,
    Chord,
    FrameCaption,
    LibrosaDescriptors,
    MusicFeatures,
    MVDescription,
    Track,
)

CLIP = "AbCdEfGhIjKlMnOp"


def features(tempo=120.0, bpb=4, key="C major",
             chords=("C:maj", "G:maj", "A:min", "F:maj"), duration=30.0, energy=0.72):
    beat = 60.0 / tempo
    n = int(duration / beat)
    beats = [Beat(time=round(i * beat, 4), number=i % bpb + 1) for i in range(n)]
    bar = beat * bpb
    bars = int(duration / bar)
    chord_list = [
        Chord(start=round(b * bar, 4), end=round(min((b + 1) * bar, duration), 4), label=chords[b % len(chords)])
        for b in range(bars)
    ]
    return MusicFeatures(
        duration=duration,
        tempo=tempo,
        tempo_strength=0.82,
        beats_per_bar=bpb,
        beats=beats,
        downbeats=[b.time for b in beats if b.number == 1],
        key=key,
        key_confidence=0.7,
        chords=chord_list,
        energy=energy,
        valence=0.81,
        danceability=0.74,
        librosa=LibrosaDescriptors(
            rms_mean=0.12, rms_std=0.04, loudness_db=-14.0, dynamic_range_db=8.5, spectral_centroid_hz=2600.0,
            spectral_bandwidth_hz=2100.0, spectral_rolloff_hz=5200.0, spectral_flatness=0.03, zero_crossing_rate=0.08,
            onset_rate=3.1, percussive_ratio=0.46, chroma_mean=[0.5] * 12,
        ),  # fmt: skip
    )


def track(lang="en", genres=("pop", "synthpop"), tags=("catchy", "upbeat")):
    return Track(
        id=CLIP, artist="Neon Harbor", song="Paper Satellites", energy=0.72, valence=0.81, danceability=0.74,
        genres=list(genres), tags=list(tags), lang=lang,
    )  # fmt: skip


def visual(n=15, colours=("pink", "purple")):
    frames = [
        FrameStats(
            t=2.0 * i, mean_rgb=[200.0, 90.0, 160.0], brightness=120.0, saturation=0.6, colours=list(colours),
            motion=6.0, cut_before=(i % 4 == 0 and i > 0), faces=1, text_overlay=(i % 2 == 0), edge_density=0.1,
        )  # fmt: skip
        for i in range(n)
    ]
    return VisualStats(width=320, height=240, fps=25.0, duration=30.0,
                       frames=frames, static_score=6.0, shot_count=4, zoom_pan=False)


def frame_captions(n=15):
    return [FrameCaption(t=2.0 * i, caption=f"A singer in a pink jacket stands under purple lights, shot {i}.")
            for i in range(n)]


LYRICS = write_lyrics(default_specs(1)[0])


def full_input(**changes) -> StageInput:
    base = dict(
        clip_id=CLIP,
        track=track(),
        music_features=features(),
        visual=visual(),
        lyrics=LYRICS,
        music_caption="A catchy pop song at 120 BPM. Its sound is bright and crisp.",
        lyrics_understanding="The lyrics revolve around love and the night, told in the first person.",
        frame_captions=frame_captions(),
        mv_type="Lyric Video",
        unified_music_caption="A unified caption.",
    )
    base.update(changes)
    return StageInput(**base)


def one(backend, stage, inp):
    (result,) = backend.run(stage, [inp])
    return result


def text_of(result):
    out = result.output
    return getattr(out, "caption", None) or getattr(out, "text", None) or out.model_dump_json()


TEXT_STAGES = (MUSIC_CAPTION, LYRICS_UNDERSTANDING, UNIFIED_MUSIC_CAPTION, MV_DESCRIPTION)


def test_registry_and_protocol():
    backend = get_backend("offline")
    assert isinstance(backend, Backend) and backend.id == "offline"
    assert "offline" in available_backends()
    with pytest.raises(ValueError, match="offline"):
        get_backend("no-such-backend")
    for stage in LLM_STAGES:
        assert backend.model_for(stage).startswith("offline-")
        assert backend.prompt_version(stage)
        params_hash(backend.params(stage))  # JSON-able
    assert backend.params(MUSIC_CAPTION) != get_backend("offline", variation_salt="x").params(MUSIC_CAPTION)


def test_deterministic_and_labelled():
    a, b = OfflineBackend(), OfflineBackend()
    for stage in TEXT_STAGES:
        ra, rb = one(a, stage, full_input()), one(b, stage, full_input())
        assert ra.ok, ra.error
        assert ra.output.model_dump_json() == rb.output.model_dump_json()
        assert ra.model == "offline-template" and ra.usage.input_tokens == 0 and ra.usage.output_tokens == 0
        assert "not LLM output" in ra.notes["label"] and ra.notes["backend"] == "offline"


def test_tempo_phrase_follows_the_measured_tempo():
    backend = OfflineBackend()
    for stage in (MUSIC_CAPTION, UNIFIED_MUSIC_CAPTION):
        slow = text_of(one(backend, stage, full_input(music_features=features(tempo=120.0))))
        fast = text_of(one(backend, stage, full_input(music_features=features(tempo=150.0))))
        assert "120 BPM" in slow and "150 BPM" not in slow, slow
        assert "150 BPM" in fast and "120 BPM" not in fast, fast
        phrase = lambda text: re.search(r"\ban? [\w -]*?\d+ BPM", text).group(0)  # noqa: E731
        assert phrase(slow) != phrase(fast)


def test_music_caption_is_rich_and_grounded():
    caption = text_of(one(OfflineBackend(), MUSIC_CAPTION, full_input()))
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", caption) if s]
    assert 3 <= len(sentences) <= 6, caption
    for fact in ("C major", "C-G-Am-F", "I-V-vi-IV", "4/4", "pop"):
        assert fact in caption, (fact, caption)
    three = text_of(one(OfflineBackend(), MUSIC_CAPTION,
                        full_input(music_features=features(bpb=3, key="A minor", chords=("A:min", "F:maj")))))
    assert "3/4" in three and "A minor" in three and "Am-F" in three


def test_music_caption_phrasing_varies_between_clips():
    backend = OfflineBackend()
    openings = set()
    for i in range(12):
        inp = full_input(clip_id=f"clip{i:012d}")
        openings.add(text_of(one(backend, MUSIC_CAPTION, inp)).split(" BPM")[0])
    assert len(openings) >= 3


def test_music_caption_reads_only_music_and_metadata():
    backend = OfflineBackend()
    full = full_input()
    minimal = StageInput(clip_id=CLIP, track=track(), music_features=features())
    restricted = MUSIC_CAPTION.restrict(full)
    assert restricted.lyrics is None and restricted.frame_captions is None
    expected = text_of(one(backend, MUSIC_CAPTION, minimal))
    assert text_of(one(backend, MUSIC_CAPTION, restricted)) == expected
    other = full_input(lyrics="totally different words", frame_captions=frame_captions(3), mv_type="Animation")
    assert text_of(one(backend, MUSIC_CAPTION, other)) == expected


def test_lyrics_understanding_depends_on_lyrics():
    backend = OfflineBackend()
    specs = default_specs(18)
    a = text_of(one(backend, LYRICS_UNDERSTANDING, full_input(lyrics=write_lyrics(specs[0]))))
    b = text_of(one(backend, LYRICS_UNDERSTANDING, full_input(lyrics=write_lyrics(specs[8]))))
    assert a and b and a != b
    assert "love" in a.lower() and ("anger" in b.lower() or "war" in b.lower()), (a, b)


def test_lyrics_understanding_never_copies_lyrics_for_default_specs():
    backend = OfflineBackend()
    for spec in default_specs(18):
        lyrics = write_lyrics(spec)
        inp = StageInput(clip_id=spec.id, track=track(lang=spec.lang), lyrics=lyrics)
        result = one(backend, LYRICS_UNDERSTANDING, inp)
        assert result.ok, result.error
        if spec.instrumental:
            assert result.output.text == ""
            continue
        assert result.output.text
        assert longest_shared_run(result.output.text, lyrics) <= 8, (spec.id, result.output.text)


def test_lyrics_understanding_languages():
    backend = OfflineBackend()
    specs = {s.lang: s for s in default_specs(18)}
    es = text_of(one(backend, LYRICS_UNDERSTANDING,
                     full_input(track=track(lang="es"), lyrics=write_lyrics(specs["es"]))))
    ko = text_of(one(backend, LYRICS_UNDERSTANDING,
                     full_input(track=track(lang="ko"), lyrics=write_lyrics(specs["ko"]))))
    assert "Spanish" in es and "sea" in es.lower(), es
    assert "Korean" in ko and "English" in ko, ko


def test_overlap_limiter_shortens_copied_text():
    lyrics = "one two three four five six seven eight nine ten eleven"
    text = "A fine summary. It quotes one two three four five six seven eight nine ten. Another line."
    assert longest_shared_run(text, lyrics) == 10
    short = limit_lyric_overlap(text, lyrics)
    assert longest_shared_run(short, lyrics) <= 8 and "A fine summary." in short


def test_instrumental_gives_empty_lyrics_understanding():
    backend = OfflineBackend()
    for inp in (
        full_input(track=track(lang="INTRUMENTAL"), lyrics=""),
        full_input(track=track(lang="INTRUMENTAL"), lyrics=None),
        full_input(lyrics="   \n"),
    ):
        result = one(backend, LYRICS_UNDERSTANDING, inp)
        assert result.ok and result.output.text == ""


def test_mv_description_one_beat_per_frame_and_round_trips():
    backend = OfflineBackend()
    for n in (15, 4, 1):
        result = one(backend, MV_DESCRIPTION, full_input(frame_captions=frame_captions(n)))
        assert result.ok, result.error
        desc = result.output
        assert len(desc.beats) == n
        assert MVDescription.parse(desc.render()) == desc
        assert desc.beats[0].title == "Opening Scene"
        assert len({b.title for b in desc.beats}) == n
    full = one(backend, MV_DESCRIPTION, full_input()).output
    rendered = full.render()
    assert rendered.startswith("**Overview:**") and "**Frame-by-frame Breakdown:**" in rendered
    assert "lyric video" in full.overview.lower() and "pink" in full.overview
    overview_sentences = [s for s in re.split(r"(?<=[.!?])\s+", full.overview) if s]
    assert 3 <= len(overview_sentences) <= 5
    assert any("downbeat" in b.text for b in full.beats)
    assert any(re.search(r"\bunder (C|G|Am|F)\b", b.text) for b in full.beats)
    assert full.closing.startswith("The MV ends") and full.closing in rendered


def test_unified_caption_weaves_music_and_lyrics():
    caption = text_of(one(OfflineBackend(), UNIFIED_MUSIC_CAPTION, full_input()))
    for fact in ("120 BPM", "4/4", "C major", "C-G-Am-F", "energy at 0.72", "love and the night"):
        assert fact in caption, (fact, caption)
    assert "\n" not in caption


def test_bad_input_is_a_failure_not_an_exception():
    backend = OfflineBackend()
    good = full_input()
    bad = StageInput(clip_id="bad_clip_0000000", track=track())
    for stage in (MUSIC_CAPTION, UNIFIED_MUSIC_CAPTION, MV_DESCRIPTION):
        results = backend.run(stage, [good, bad])
        by_id = {r.clip_id: r for r in results}
        assert by_id[CLIP].ok
        assert not by_id["bad_clip_0000000"].ok and "music_features" in by_id["bad_clip_0000000"].error
    empty = one(backend, MV_DESCRIPTION, full_input(frame_captions=[]))
    assert not empty.ok and empty.error


def test_vision_stages_call_offline_visual(monkeypatch):
    """frame_captions/mv_type are answered by builders.llm.offline.visual (faked here)."""
    from builders.llm.offline import visual as offline_visual
    from builders.stages import FRAME_CAPTIONS, MV_TYPE
    from mv4all.schema import FrameCaptions

    seen = {}

    def caption_frames(v):
        seen["caption_frames"] = v
        return FrameCaptions(captions=[FrameCaption(t=f.t, caption=f"frame at {f.t}") for f in v.frames])

    def classify_mv_type(v, captions=None, track=None):
        seen["classify"] = (v, captions, track)
        return "Dance Performance"

    monkeypatch.setattr(offline_visual, "caption_frames", caption_frames)
    monkeypatch.setattr(offline_visual, "classify_mv_type", classify_mv_type)
    backend = OfflineBackend()
    caps = one(backend, FRAME_CAPTIONS, full_input())
    assert caps.ok and caps.model == "offline-visual-stats" and len(caps.output.captions) == 15
    assert seen["caption_frames"] == visual()
    tag = one(backend, MV_TYPE, full_input(frame_captions=caps.output.captions))
    assert tag.ok and tag.output.mv_type == "Dance Performance"
    assert seen["classify"][1] == caps.output.captions and seen["classify"][2] == track()
    assert not one(backend, MV_TYPE, StageInput(clip_id=CLIP)).ok  # no visual stats: a failure result


def test_vision_stages_delegate_to_offline_visual():
    __import__("builders.llm.offline.visual")
    from builders.stages import FRAME_CAPTIONS, MV_TYPE

    backend = OfflineBackend()
    captions = one(backend, FRAME_CAPTIONS, full_input())
    assert captions.ok, captions.error
    assert captions.model == "offline-visual-stats"
    assert len(captions.output.captions) == 15
    tag = one(backend, MV_TYPE, full_input(frame_captions=captions.output.captions))
    assert tag.ok, tag.error
    missing = one(backend, FRAME_CAPTIONS, StageInput(clip_id=CLIP))
    assert not missing.ok


def test_pretty_chords():
    assert pretty_chord("A:min") == "Am" and pretty_chord("C:maj") == "C" and pretty_chord("N") == "N"
    assert pretty_chord("F#:min7") == "F#m7"


def test_chord_names_match_the_prompts_on_every_madmom_label():
    """Offline captions and OpenAI prompts spell chords one way (builders.music_theory.chord_name);
    they differ only in how they say "no chord", which each passes in."""
    from builders.llm import facts

    roots = ["C", "C#", "Db", "D", "D#", "Eb", "E", "F", "F#", "Gb", "G", "G#", "Ab", "A", "A#", "Bb", "B"]
    for label in [f"{root}:{quality}" for root in roots for quality in ("maj", "min")]:
        assert pretty_chord(label) == facts.pretty_chord(label), label
    assert (pretty_chord("N"), facts.pretty_chord("N")) == ("N", "no chord")
    for label in ("F#:min7", "Bb:maj7", "E:sus4", "Am", "X"):  # beyond madmom's 24: still one spelling
        assert pretty_chord(label) == facts.pretty_chord(label) or label == "X", label


def test_sample_lyrics_shape():
    for spec in default_specs(18):
        lyrics = write_lyrics(spec)
        assert lyrics == write_lyrics(spec)
        lines = [line for line in lyrics.splitlines() if line.strip()]
        if spec.instrumental:
            assert lyrics == ""
            continue
        assert 12 <= len(lines) <= 30
        assert max(lines.count(line) for line in lines) >= 2  # a repeated chorus
        if spec.lang == "es":
            assert re.search(r"[áéíóúñ¿¡]", lyrics)
        if spec.lang == "ko":
            assert re.search(r"[\uac00-\ud7a3]", lyrics) and re.search(r"[A-Za-z]{3,}", lyrics)
    spec = default_specs(1)[0]
    assert write_lyrics(with_overrides(spec, seed=spec.seed + 1)) != write_lyrics(spec)
