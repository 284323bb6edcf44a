"""The MV description in the paper's shape (Figure 4): an overview, 15 short frames, one closing line.

Length: an overview of about 60-90 words, one 10-25-word beat per sampled frame (2 s apart, so
15 for a 30 s clip) and a closing sentence, about 350 words in all, as GPT-4o-mini writes for
our prompt. Every claim is read off a measurement, so the overview cannot contradict its frames:

- camera and movement: the median within-shot motion band of the frames (the captioner's own
  ``motion_band``) and the share of frames where a zoom/pan glides over a still picture;
- editing: the clip's measured cuts per minute; light: its median brightness; palette: the
  colours the frames were measured to have;
- tempo, tone and energy: the music features (BPM, Music4All energy/valence);
- MV type, genre and lyric themes: the stage inputs. The genre adds an attitude ("street-level
  swagger"), never a measurable property such as motion, light or editing pace.

Each beat is the frame's look and movement followed by the music at that moment (the chord
sounding and where the frame falls in the bar).
"""

from __future__ import annotations

import statistics
from collections import Counter

from builders.llm.offline.lexicon import THEMES
from builders.llm.offline.lyrics import themes_from_summary
from builders.llm.offline.music import MusicFacts
from builders.llm.offline.text import Chooser, cap, clean_line, join_list
from builders.llm.offline.visual import glides_over_still, motion_band
from builders.stages import StageInput
from builders.video.records import FrameStats, VisualStats
from mv4all.schema import MusicFeatures, MVBeat, MVDescription, Track

BEAT_WORDS = (10, 25)  # words per beat text (title excluded)

_MV_TYPE_PHRASES = {
    "Live Performance": ("a live performance video", "built around the performers and the crowd"),
    "Lyric Video": ("a lyric video", "where the words become the main visual element"),
    "Animation": ("an animated music video", "with drawn characters carrying the action"),
    "Story Narrative": ("a story-driven narrative video", "following characters through a small plot"),
    "Artistic/Abstract": ("an abstract, art-house music video", "built from shapes, textures and visual metaphors"),
    "Dance Performance": ("a dance performance video", "with choreography locked to the beat"),
    "Behind-the-Scenes": ("a behind-the-scenes video", "showing the musicians at work"),
    "Nature/Scenic": ("a scenic nature video", "letting landscapes set the mood"),
    "Static/Dynamic Picture Montage": ("a picture montage", "built from still images"),
    "Cinematic Drama": ("a cinematic drama", "with film-like framing and charged scenes"),
}

# (keywords searched in genres/tags, the attitude the styling borrows from the genre)
_GENRE_ATTITUDES: list[tuple[tuple[str, ...], str]] = [
    (("metal",), "heavy, stage-show menace"),
    (("punk",), "raw, do-it-yourself urgency"),
    (("drum and bass", "dnb", "jungle"), "glitchy club futurism"),
    (("chiptune", "video game"), "retro video-game playfulness"),
    (("k-pop", "kpop", "idol"), "high-gloss idol polish"),
    (("synthpop", "new wave", "80s", "retro"), "retro 80s synth sheen"),
    (("house", "techno", "edm", "electronic", "dance"), "late-night club pulse"),
    (("hip hop", "rap", "trap"), "street-level swagger"),
    (("jazz", "swing", "blues"), "vintage, playful charm"),
    (("country", "bluegrass", "americana"), "rustic Americana warmth"),
    (("folk", "acoustic", "singer-songwriter"), "handmade, intimate warmth"),
    (("ambient", "drone", "new age"), "contemplative calm"),
    (("classical", "neoclassical", "piano", "orchestral"), "refined, concert-hall elegance"),
    (("soul", "r&b", "rnb", "funk"), "warm, soulful intimacy"),
    (("latin", "reggaeton", "salsa"), "sun-drenched romance"),
    (("indie", "lo-fi", "lofi"), "understated indie sincerity"),
    (("rock", "grunge", "alternative"), "gritty rock drive"),
    (("ballad",), "moody, heartfelt drama"),
    (("pop",), "glossy pop polish"),
]

# How the overview names a median motion band, and how a beat names its own frame's band.
_CLIP_MOTION = {
    "still": "an almost motionless picture", "slight": "barely any movement", "gentle": "gentle, unhurried movement",
    "steady": "steady movement", "lively": "lively movement", "rapid": "rapid, restless movement",
}
_BEAT_MOTION = {
    "still": "held still", "slight": "barely moving", "gentle": "moving gently", "steady": "moving steadily",
    "lively": "moving briskly", "rapid": "in rapid motion",
}

_TITLES = {
    "verse": ("Setting the Scene", "First Verse", "Verse Groove", "Second Verse", "Quiet Verse"),
    "build": ("Rising Tension", "Building Momentum", "The Lift", "Turning Point"),
    "chorus": ("Chorus Burst", "Hook Moment", "High Point", "Full Chorus", "Chorus Peak"),
    "outro": ("Breakdown", "Winding Down", "Last Refrain", "Afterglow"),
    "closing": ("Closing Shot", "Final Frame", "Fade Out"),
}
_SECTION_NAMES = {"opening": "intro", "verse": "verse", "build": "build", "chorus": "chorus", "outro": "bridge",
                  "closing": "outro"}
_COLOUR_CANON = {"grey": "gray", "golden": "gold", "scarlet": "red", "crimson": "red", "navy": "blue",
                 "violet": "purple", "lime": "green"}
_ROMAN = {2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII", 8: "VIII", 9: "IX", 10: "X"}


# --------------------------------------------------------------------------- measured summaries


def genre_attitude(track: Track | None) -> str:
    words = [w.lower() for w in ((track.genres if track else []) + (track.tags if track else []))]
    for keywords, attitude in _GENRE_ATTITUDES:
        if any(k in w for w in words for k in keywords):
            return attitude
    return "music-driven character"


def palette(visual: VisualStats | None, top: int = 3) -> list[str]:
    """The most frequent measured colours (each frame's first two), in order of first appearance on ties."""
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for fr in visual.frames if visual else []:
        for c in fr.colours[:2]:
            name = _COLOUR_CANON.get(c.lower(), c.lower())
            counts[name] += 1
            first.setdefault(name, len(first))
    return sorted(counts, key=lambda c: (-counts[c], first[c]))[:top]


def clip_motion_band(visual: VisualStats) -> str | None:
    """The median band of the frames whose motion was measured within one shot."""
    moving = [f.motion for f in visual.frames if f.motion_in_shot]
    return motion_band(statistics.median(moving)) if moving else None


def glide_share(visual: VisualStats) -> float:
    frames = [f for f in visual.frames if f.motion_in_shot]
    return sum(glides_over_still(f, visual) for f in frames) / len(frames) if frames else 0.0


def light_word(brightness: float) -> str:
    """Median brightness (0-255) as the overview says it."""
    return "low-key and shadowy" if brightness < 70 else ("bright and airy" if brightness > 170 else "evenly lit")


def editing_phrase(visual: VisualStats) -> str:
    cpm = visual.cuts_per_minute
    if cpm < 1:
        return "no cuts at all"
    if cpm < 6:
        return "only a few cuts"
    if cpm < 20:
        return "a cut every few seconds"
    return "rapid-fire cutting"


def _camera_sentence(visual: VisualStats, colours: list[str]) -> str:
    band = clip_motion_band(visual)
    if band is not None and glide_share(visual) >= 0.5:
        moves = "slow camera moves over still pictures"
    elif band is not None:
        moves = _CLIP_MOTION[band]
    else:
        moves = "shots that change too fast to settle"
    light = light_word(visual.brightness or statistics.median(f.brightness for f in visual.frames))
    tones = f" in {join_list(colours)} tones" if colours else ""
    return f"The camera work shows {moves} with {editing_phrase(visual)}, {light}{tones}."


# --------------------------------------------------------------------------- beats


def _section(i: int, n: int, t: float, duration: float) -> str:
    p = t / duration if duration > 0 else i / max(n - 1, 1)
    if i == 0:
        return "opening"
    if i == n - 1 and p >= 0.7:
        return "closing"
    if p < 0.3:
        return "verse"
    if p < 0.5:
        return "build"
    if p < 0.8:
        return "chorus"
    return "outro"


def _subject(f: FrameStats) -> str:
    """The frame's look in a few words: light, colours and what is in it."""
    light = "dark" if f.brightness < 45 else "dim" if f.brightness < 85 else "bright" if f.brightness >= 170 else ""
    colours = list(dict.fromkeys(_COLOUR_CANON.get(c.lower(), c.lower()) for c in f.colours))[:2]
    tone = f"{' and '.join(colours)} " if colours else ""
    if f.faces == 1 and f.face_size >= 0.3:
        thing = "close-up of a face"
    elif f.faces == 1:
        thing = "shot of one face"
    elif f.faces > 1:
        thing = f"shot of {f.faces} faces"
    elif f.text_overlay:
        thing = "frame of on-screen text"
    elif f.flat_colour >= 0.35:
        thing = "cartoon-flat frame"
    elif f.layering >= 0.55:
        thing = "horizon-like frame"
    elif f.edge_density >= 0.12:
        thing = "busy, detailed frame"
    else:
        thing = "frame"
    words = " ".join(w for w in (light, tone.strip(), thing) if w)
    return ("an " if words[:1] in "aeiou" else "a ") + words


def _movement(f: FrameStats, visual: VisualStats) -> str:
    if not f.motion_in_shot:
        return "cut short by the next shot"
    if glides_over_still(f, visual):
        return "as the camera pushes in" if f.zoom > 0.01 else ("as the camera pulls back" if f.zoom < -0.01
                                                                  else "as the camera pans")
    return _BEAT_MOTION[motion_band(f.motion)]


def _on_the_beat(t: float, features: MusicFeatures, beat_len: float | None) -> str:
    tol = 0.25 * beat_len if beat_len else 0.15
    if features.downbeats and min(abs(t - d) for d in features.downbeats) <= tol:
        return "on the downbeat"
    if features.beats:
        nearest = min(features.beats, key=lambda b: abs(b.time - t))
        if abs(nearest.time - t) <= tol:
            return f"on beat {nearest.number}"
    return "between beats"


def _frame_at(visual: VisualStats | None, t: float) -> FrameStats | None:
    if visual is None or not visual.frames:
        return None
    best = min(visual.frames, key=lambda f: abs(f.t - t))
    return best if abs(best.t - t) <= 1.0 else None


def _beat_text(i: int, f: FrameStats | None, visual: VisualStats | None, caption: str, music: str,
               extras: list[str]) -> str:
    if f is None or visual is None:  # no measurement for this frame: its caption's first clause
        look = clean_line(caption.split(";")[0]).rstrip(".")
        text = f"{look}, {music}"
    else:
        lead = "Open on" if i == 0 else ("Cut to" if f.cut_before else "Hold on")
        text = f"{lead} {_subject(f)}, {_movement(f, visual)}, {music}"
    for extra in extras:  # optional clauses, only while the beat stays within its word budget
        if len(f"{text}, {extra}".split()) <= BEAT_WORDS[1]:
            text = f"{text}, {extra}"
    words = text.split()
    if len(words) > BEAT_WORDS[1]:
        text = " ".join(words[: BEAT_WORDS[1]]).rstrip(",;")
    return cap(text.rstrip(",;")) + "."


def write_mv_description(inp: StageInput, choose: Chooser) -> MVDescription:
    features: MusicFeatures = inp.music_features  # type: ignore[assignment]
    track, visual = inp.track, inp.visual
    captions = list(inp.frame_captions or [])
    m = MusicFacts(features, track, choose)
    genre = m.main_genre()
    themes = [THEMES[t]["name"] for t in themes_from_summary(inp.lyrics_understanding or "")]
    instrumental = (track is not None and track.instrumental) or not (inp.lyrics_understanding or "").strip()

    # ---------------------------------------------------------------- overview (60-90 words)
    type_phrase, type_detail = _MV_TYPE_PHRASES.get(inp.mv_type or "", ("a music video", "shaped by the music"))
    subject = f"this {genre} {m.kind()}" if genre else f"this {m.kind()}"
    colours = palette(visual)
    sentences = [f"The MV for {subject} is {type_phrase}, {type_detail}, styled with {genre_attitude(track)}."]
    if visual is not None and visual.frames:
        sentences.append(_camera_sentence(visual, colours))
    pace = f"{m.tempo_phrase()} pulse" if m.tempo > 0 else "its pulse"
    sentences.append(f"The tone is {m.tone()}, paced by {pace} and {m.energy_np()}.")
    if themes:
        sentences.append(f"Visual motifs echo the lyrics' themes of {join_list(themes)}.")
    elif instrumental:
        sentences.append("With no lyrics, the imagery follows the music's "
                         f"{m.valence_word().replace(' and ', ', ')} mood.")
    overview = clean_line(" ".join(sentences))

    # ---------------------------------------------------------------- beats (10-25 words each)
    duration = float(features.duration) or (visual.duration if visual else 0.0)
    beats: list[MVBeat] = []
    used: dict[str, int] = {}
    titles: set[str] = set()
    n = len(captions)
    for i, fc in enumerate(captions):
        section = _section(i, n, fc.t, duration)
        # A beat's title names its place in the song's arc, in order within each section, so the
        # sequence of titles is the same for every 30 s clip: the numbered list has one fixed spine.
        k = used.get(section, 0)
        used[section] = k + 1
        base = "Opening Scene" if section == "opening" else _TITLES[section][k % len(_TITLES[section])]
        title, extra = base, 2
        while title in titles:
            title = f"{base} {_ROMAN.get(extra, str(extra))}"
            extra += 1
        titles.add(title)
        chord = m.chord_at(fc.t)
        where = _on_the_beat(fc.t, features, m.beat_len)
        music = f"{where} under {chord}" if chord else f"{where} in a pause between chords"
        extras = ["as the chorus peaks"] if section == "chorus" else []
        if themes and section in ("build", "chorus", "closing"):
            extras.append(f"echoing {themes[i % len(themes)]}")
        text = _beat_text(i, _frame_at(visual, fc.t), visual, fc.caption, music, extras)
        beats.append(MVBeat(title=title, text=text))

    # ---------------------------------------------------------------- closing sentence
    key = (features.key or "").strip()
    harmony = f"the {key} harmony" if key and key != "unknown" and m.key is not None else "the harmony"
    motif = f"its themes of {join_list(themes[:2])}" if themes else f"its {m.valence_word()} mood"
    closing = f"The MV ends as {harmony} settles, leaving {motif} with the viewer."
    return MVDescription(overview=overview, beats=beats, closing=closing)
