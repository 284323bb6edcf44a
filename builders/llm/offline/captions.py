"""The two music captions: what the music sounds like, and the unified caption with the lyrics.

``write_music_caption`` reads only the measured features and the Music4All metadata;
``write_unified_caption`` adds what the music caption and the lyrics understanding said.
"""

from __future__ import annotations

from builders.llm.offline.music import MusicFacts
from builders.llm.offline.text import Chooser, cap, clean_line, end_sentence, lower_first, split_sentences, with_article
from mv4all.schema import MusicFeatures, Track


def write_music_caption(features: MusicFeatures, track: Track | None, choose: Chooser) -> str:
    m = MusicFacts(features, track, choose)
    genre, kind = m.genre(), m.kind()
    described = genre
    tp, meter, vocals = m.tempo_phrase(), m.meter(), m.vocals()

    opening = choose.pick(
        "s1",
        (
            f"{cap(with_article(f'{described} {kind}' if described else kind))} moving at {tp} in {meter}{vocals}.",
            f"This {described + ' ' if described else ''}{kind} sits at {tp}, counted in {meter}{vocals}.",
            f"Set at {tp} in {meter}, this is {with_article(f'{described} {kind}' if described else kind)}{vocals}.",
        ),
    )
    harmony = (
        f"The harmony is hard to pin down, {m.key_phrase()}, with no clearly tracked chords."
        if not m.sequence
        else None
    ) or choose.pick(
        "s2",
        (
            f"Harmonically it stays {m.key_phrase()}, built on {m.progression_phrase()}, {m.harmonic_rhythm()}.",
            f"The harmony sits {m.key_phrase()}: {m.progression_phrase()}, {m.harmonic_rhythm()}.",
            f"{cap(m.progression_phrase())} anchors the music {m.key_phrase()}, {m.harmonic_rhythm()}.",
        ),
    )
    rhythm = choose.pick(
        "s3",
        (
            f"The rhythm has {m.pulse()}, with {m.downbeats()} and {m.percussion()}.",
            f"Rhythmically there is {m.pulse()} and {m.downbeats()}, carried by {m.percussion()}.",
            f"{cap(m.percussion())} rides on {m.pulse()}, with {m.downbeats()}.",
        ),
    )
    timbre = choose.pick(
        "s4",
        (
            f"Its sound is {m.brightness()}, with {m.dynamics()} and {m.texture()}.",
            f"Sonically the mix feels {m.brightness()}, showing {m.dynamics()} and {m.texture()}.",
            f"The timbre is {m.brightness()}; expect {m.dynamics()} and {m.texture()}.",
        ),
    )
    mood = choose.pick(
        "s5",
        (
            f"Overall the mood is {m.valence_word()}, with {m.energy_np()} and {m.dance()}{m.tag_clause()}.",
            f"The result feels {m.valence_word()}, carrying {m.energy_np()} and {m.dance()}{m.tag_clause()}.",
            f"Emotionally it comes across as {m.valence_word()}, with {m.energy_np()} and {m.dance()}{m.tag_clause()}.",
        ),
    )
    middle = [harmony, rhythm, timbre]
    if choose.index("merge", 3) == 0:  # sometimes four sentences instead of five
        middle = [harmony, (f"The rhythm has {m.pulse()} and {m.percussion()}, "
                            f"while the sound is {m.brightness()}, with {m.dynamics()}.")]
    orders = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (2, 0, 1), (1, 2, 0))
    order = [i for i in orders[choose.index("order", len(orders))] if i < len(middle)]
    body = [middle[i] for i in order]
    return " ".join([opening, *body, mood])



def write_unified_caption(
    features: MusicFeatures,
    track: Track | None,
    music_caption: str | None,
    lyrics_understanding: str | None,
    choose: Chooser,
) -> str:
    m = MusicFacts(features, track, choose)
    genre = m.genre()
    subject = f"{genre} {m.kind()}" if genre else m.kind()
    bars = len(features.downbeats)
    dur = float(features.duration)
    bar_part = f"{m.downbeats()} marking {bars} bars" if bars >= 2 else m.downbeats()
    bar_part2 = f"{m.downbeats()} across {bars} bars" if bars >= 2 else m.downbeats()
    harmony = (
        f"Its harmony is hard to pin down, {m.key_phrase()}, with no clearly tracked chords."
        if not m.sequence
        else choose.pick(
            "u2",
            (
                f"Its harmony sits {m.key_phrase()}, with {m.progression_phrase()} {m.harmonic_rhythm()}.",
                f"{cap(m.progression_phrase())}, {m.harmonic_rhythm()}, keeps the music {m.key_phrase()}.",
            ),
        )
    )
    parts = [
        choose.pick(
            "u1",
            (
                (f"This {subject} moves at {m.tempo_phrase()} in {m.meter()}, "
                 f"with {bar_part} over the {dur:.0f}-second clip."),
                (f"Pulsing at {m.tempo_phrase()} in {m.meter()}, "
                 f"this {subject} has {bar_part2} of the {dur:.0f}-second excerpt."),
            ),
        ),
        harmony,
    ]
    numbers = m.numbers()
    mood = f"{m.valence_word()}, with {m.energy_np()} and {m.dance()}"
    if numbers:
        parts.append(f"With {numbers}, it comes across as {mood}.")
    else:
        parts.append(f"It comes across as {mood}.")
    if music_caption:  # borrow what the music caption says beyond tempo, harmony and mood
        key_text = (features.key or "").strip().lower()
        skip = ("bpm", "tempo", "downbeat", "harmon", "chord", "progression",
                "mood", "comes across", "feels", "groove", "danceab")
        extra = [
            s for s in split_sentences(music_caption)
            if not any(w in s.lower() for w in skip) and (not key_text or key_text not in s.lower())
        ][:2]  # fmt: skip
        if extra:
            joined = " ".join(extra)
            own_lead = ("its sound", "sonically", "texturally", "the timbre", "the mix", "in sound", "its timbre")
            if joined.lower().startswith(own_lead):
                parts.append(joined)
            else:
                parts.append(choose.pick("u4", ("In sound, ", "Texturally, ", "Sonically, ")) + lower_first(joined))
    lu = (lyrics_understanding or "").strip()
    if lu:
        lu_text = " ".join(split_sentences(lu)[:2])
        starts = ("the lyrics", "lyrically", "thematically", "at their core", "the song's lyrics", "its lyrics")
        parts.append(lu_text if lu_text.lower().startswith(starts) else "Lyrically, " + lower_first(lu_text))
    elif track is not None and track.instrumental:
        parts.append("As an instrumental, it leaves the storytelling entirely to the music.")
    elif lyrics_understanding == "":
        parts.append("With no lyrics to draw on, the music alone carries the story.")
    return clean_line(" ".join(end_sentence(p) for p in parts))
