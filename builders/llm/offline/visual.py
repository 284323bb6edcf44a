"""The offline vision stages: frame captions and MV type from measured frame statistics.

This is a deterministic, network-free *heuristic*, not a vision model: every word it writes
comes from a number that ``builders.video.analyse_video`` measured (named colours,
brightness, saturation, letterbox bars, faces found by the Haar cascade, text bands,
within-shot motion, global zoom/pan, cuts, shake, flicker, rhythm). It never looks at the
pixels itself and knows nothing about who made the video. Identical statistics give
byte-identical output.

- ``caption_frames(visual)``: one caption per sampled frame.
- ``classify_mv_type(visual, captions, track)``: one of the ten MV types by explicit,
  general rules over those statistics (``explain_mv_type`` shows the evidence); genres and
  tags only break near-ties.
"""

from __future__ import annotations

from builders.video.records import FrameStats, VisualStats
from mv4all.schema import FRAME_STEP_SECONDS, MV_TYPES, FrameCaption, FrameCaptions, Track

VERSION = "1"  # bump when captions or rules change: it is part of the offline backend's cache key
BACKEND_NOTE = "offline heuristic: captions and MV type derived from measured frame statistics, no vision model"

# --------------------------------------------------------------------------- captions


def _pick(options: list[str], key: int) -> str:
    return options[key % len(options)]


def _light(f: FrameStats) -> str:
    b = f.brightness
    if b < 45:
        return "dark"
    if b < 85:
        return "dim"
    if b < 150:
        return ""
    if b < 200:
        return "bright"
    return "very bright, almost white"


def _colour_phrase(f: FrameStats) -> str:
    names = list(dict.fromkeys(f.colours))[:3]
    if not names:
        return "muted tones"
    deep = f.brightness < 70
    soft = f.brightness > 170 and f.saturation < 0.35

    def adj(c: str) -> str:
        if c in ("black", "white", "gray"):
            return c
        if deep:
            return f"deep {c}"
        if soft:
            return f"pale {c}"
        return c

    if len(names) == 1:
        return f"{adj(names[0])} tones"
    if len(names) == 2:
        return f"{adj(names[0])} and {names[1]}"
    return f"{adj(names[0])}, {names[1]} and {names[2]}"


def _shot_words(f: FrameStats, i: int) -> str:
    parts = []
    light = _light(f)
    if light:
        parts.append(light)
    if f.saturation < 0.12:
        parts.append("desaturated")
    elif f.saturation > 0.6 and f.colourfulness > 60:
        parts.append("vividly saturated")
    if f.letterbox:
        parts.append("letterboxed")
    kind = "widescreen shot" if f.letterbox else _pick(["shot", "frame", "image"], i)
    desc = ", ".join(parts)
    article = "An" if (desc or kind)[:1].lower() in "aeiou" else "A"
    return f"{article} {desc + ' ' if desc else ''}{kind} in {_colour_phrase(f)}"


def _content_words(f: FrameStats, visual: VisualStats, i: int) -> list[str]:
    out: list[str] = []
    if f.faces == 1:
        if f.face_size >= 0.3:
            out.append(_pick(["a face in close-up", "a face fills much of the frame", "a close-up of a face"], i))
        elif f.face_size >= 0.15:
            out.append(_pick(["a face in medium close-up", "one person's face in view"], i))
        else:
            out.append("a small face in the frame")
    elif f.faces > 1:
        out.append(f"{f.faces} faces in view")
    if f.text_overlay:
        out.append(_pick(["a line of on-screen text overlaid", "lyric-style text across the picture",
                          "captioned text over the image"], i))
    if f.flat_colour >= 0.35:
        out.append(_pick(["flat, cartoon-like colour fields", "bold flat colours like an animation cel"], i))
    elif f.colourfulness >= 95 and f.edge_density < 0.05:
        out.append(_pick(["smooth, intensely colourful patterns", "swirling saturated colour"], i))
    if f.layering >= 0.55 and not f.text_overlay and not f.faces:
        out.append(_pick(["horizontal bands like a horizon", "layered like sky over land",
                          "a layered, horizon-like composition"], i))
    if f.edge_density >= 0.12:
        out.append("a busy, detailed composition")
    elif f.edge_density <= 0.015 and not out:
        out.append("a clean, minimal composition")
    if visual.flicker >= 3.0 and f.brightness < 110 and not f.letterbox:
        out.append("light flashing in the darkness" if f.brightness < 60 else "flashing lights")
    return out


# Within-shot motion bands (mean absolute luma change to a frame a moment later). The frame
# captions and the MV description's overview both speak in these bands, so they cannot disagree.
MOTION_BANDS: tuple[tuple[float, str], ...] = (
    (0.3, "still"), (1.0, "slight"), (3.0, "gentle"), (8.0, "steady"), (16.0, "lively"), (float("inf"), "rapid"),
)
_BAND_WORDS = {
    "still": ["the frame holds completely still", "nothing moves"],
    "slight": ["almost no movement", "barely any motion"],
    "gentle": ["gentle movement", "slow, gentle motion"],
    "steady": ["steady movement", "moderate motion"],
    "lively": ["lively movement", "brisk motion"],
    "rapid": ["rapid, energetic movement", "fast, restless motion"],
}


def motion_band(motion: float) -> str:
    """The band name of a within-shot motion value."""
    return next(name for upper, name in MOTION_BANDS if motion < upper)


def camera_moves(f: FrameStats) -> list[str]:
    """Measured global camera moves at this frame, e.g. ``["the camera slowly pushes in", "pans right"]``."""
    cam: list[str] = []
    if abs(f.zoom) >= 0.01:
        speed = "slowly " if abs(f.zoom) < 0.08 else ""
        cam.append(f"the camera {speed}{'pushes in' if f.zoom > 0 else 'pulls back'}")
    if abs(f.pan_x) >= 0.01 and abs(f.pan_x) >= abs(f.pan_y):
        cam.append(f"{'slowly ' if abs(f.pan_x) < 0.06 else ''}pans {'right' if f.pan_x > 0 else 'left'}")
    elif abs(f.pan_y) >= 0.01:
        cam.append(f"tilts {'down' if f.pan_y > 0 else 'up'}")
    return cam


def glides_over_still(f: FrameStats, visual: VisualStats) -> bool:
    """A rigid zoom/pan explains nearly all the motion: a camera move over a motionless picture."""
    return bool(camera_moves(f)) and f.motion >= 0.4 and f.residual <= 0.35 * f.motion and visual.shake < 0.6


def _motion_words(f: FrameStats, visual: VisualStats, i: int) -> str:
    if not f.motion_in_shot:
        return _pick(["the shot changes a moment later", "a cut follows almost at once"], i)
    m = f.motion
    cam = camera_moves(f)
    if glides_over_still(f, visual):
        if not cam[0].startswith("the camera"):
            cam[0] = "the camera " + cam[0]
        return " and ".join(cam) + " over a motionless picture"
    words = _pick(_BAND_WORDS[motion_band(m)], i)
    if visual.shake >= 0.6 and m >= 0.3:
        words += ", handheld shake"
    elif cam:
        words += ", " + " and ".join(c.replace("the camera ", "camera ") if c.startswith("the camera")
                                     else "camera " + c for c in cam)
    return words


def _caption(f: FrameStats, visual: VisualStats, i: int) -> str:
    shot = _shot_words(f, i)
    if i == 0:
        lead = "Opening: "
        shot = shot[0].lower() + shot[1:]
    elif f.cut_before:
        lead = _pick(["Cut to ", "A new shot: ", "The scene cuts to "], i)
        shot = shot[0].lower() + shot[1:]
    else:
        lead = ""
    content = _content_words(f, visual, i)
    text = lead + shot
    if content:
        text += "; " + ", ".join(content)
    text += "; " + _motion_words(f, visual, i) + "."
    return text


def caption_frames(visual: VisualStats) -> FrameCaptions:
    """One caption per sampled frame, built only from what was measured on it."""
    captions: list[FrameCaption] = []
    seen: set[str] = set()
    for i, f in enumerate(visual.frames):
        text = _caption(f, visual, i)
        if text in seen:  # same look as an earlier frame: say where we are instead of repeating
            text = text[:-1] + f", {f.t:.0f} s in."
        seen.add(text)
        captions.append(FrameCaption(t=f.t, caption=text))
    return FrameCaptions(captions=captions)


# --------------------------------------------------------------------------- MV type

_TAG_HINTS: dict[str, tuple[str, ...]] = {
    "Live Performance": ("live", "concert", "punk", "metal", "rock", "bluegrass"),
    "Dance Performance": ("dance", "club", "house", "choreography", "k-pop", "idol", "edm", "disco"),
    "Lyric Video": ("lyric", "singalong", "karaoke"),
    "Animation": ("cartoon", "anime", "video game", "chiptune", "animated", "playful"),
    "Artistic/Abstract": ("experimental", "psychedelic", "abstract", "drum and bass", "idm", "glitch"),
    "Story Narrative": ("storytelling", "narrative", "hip hop", "rap", "story"),
    "Behind-the-Scenes": ("behind the scenes", "making of", "studio session", "sessions"),
    "Nature/Scenic": ("ambient", "atmospheric", "nature", "new age", "folk", "acoustic"),
    "Static/Dynamic Picture Montage": ("lo-fi", "slideshow", "photo", "nostalgic"),
    "Cinematic Drama": ("cinematic", "ballad", "melancholic", "soundtrack", "dramatic"),
}


def _frac(frames: list[FrameStats], pred) -> float:
    return sum(1 for f in frames if pred(f)) / len(frames) if frames else 0.0


def _clamp(x: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return max(lo, min(hi, x))


def _tempo_match(bpm: float | None, tempo: float | None) -> bool:
    if not bpm or not tempo:
        return False
    for ratio in (0.5, 1.0, 2.0, 1.0 / 3.0, 2.0 / 3.0, 0.25):
        if abs(bpm / (tempo * ratio) - 1.0) <= 0.06:
            return True
    return False


def explain_mv_type(
    visual: VisualStats, captions: FrameCaptions | list[FrameCaption] | None = None, track: Track | None = None
) -> list[tuple[str, float, list[str]]]:
    """Evidence score (0..~1) and reasons for every MV type, best first.

    The rules are general visual reasoning: text overlays make a lyric video; slow zoom/pan
    over stills or no motion at all make a picture montage; letterbox + darkness + slow
    cutting make cinematic drama; flat saturated colour fields make animation; several
    shots with faces make a story; shaky, desaturated footage reads as behind-the-scenes;
    flashing light, darkness and fast cuts read as a live show; strongly periodic motion
    (in time with the song when its tempo is known) reads as dance; layered, calm, colourful
    horizons read as scenery; smooth, intensely colourful, faceless motion reads as abstract.
    """
    fr = visual.frames
    n = max(1, len(fr))
    text = visual.text_share if visual.text_share or not fr else _frac(fr, lambda f: f.text_overlay)
    face = visual.face_share if visual.face_share or not fr else _frac(fr, lambda f: f.faces > 0)
    cpm = (visual.cuts_per_minute if visual.cuts_per_minute
           else (visual.shot_count - 1) * 60.0 / max(1.0, visual.duration or FRAME_STEP_SECONDS * n))
    motion = visual.static_score
    bright = visual.brightness or (sum(f.brightness for f in fr) / n if fr else 128.0)
    sat = visual.saturation or (sum(f.saturation for f in fr) / n if fr else 0.3)
    colourful = visual.colourfulness
    flat = visual.flat_colour
    layer = visual.layering
    edges = sorted(f.edge_density for f in fr)[len(fr) // 2] if fr else 0.05
    tempo = track.tempo if track is not None else None
    scores: dict[str, tuple[float, list[str]]] = {}

    def add(mv: str, score: float, why: list[str]) -> None:
        scores[mv] = (round(score, 4), why)

    # Static/Dynamic Picture Montage: still pictures (no motion) or rigid zoom/pan over them
    s, why = 0.0, []
    if motion < 1.0:  # a motionless clip is pictures, whatever is written or drawn on them
        s, why = 1.05, [f"almost no within-shot motion ({motion:.2f})"]
    elif visual.zoom_pan:
        s, why = (0.8 + 0.15 * visual.zoom_pan_share,
                  [f"slow zoom/pan over still pictures ({visual.zoom_pan_share:.0%} of moving shots)"])
    elif visual.zoom_pan_share >= 0.4:
        s, why = 0.3 + 0.4 * visual.zoom_pan_share, [f"part zoom/pan over stills ({visual.zoom_pan_share:.0%})"]
    add("Static/Dynamic Picture Montage", s, why)

    # Lyric Video: text lines on screen most of the time
    s = 0.0
    why = []
    if text >= 0.3:
        s = 0.55 + 0.45 * text
        why = [f"text overlay in {text:.0%} of frames"]
    add("Lyric Video", s, why)

    # Cinematic Drama: letterbox, darkness, slow cutting, restrained motion
    s, why = 0.0, []
    if visual.letterbox:
        s += 0.5
        why.append("letterboxed widescreen")
    if bright < 70:
        s += 0.2
        why.append(f"dark ({bright:.0f})")
    if cpm <= 10:
        s += 0.1
        why.append(f"slow cutting ({cpm:.1f}/min)")
    if motion < 6:
        s += 0.05
    if not visual.letterbox:
        s *= 0.6
    add("Cinematic Drama", s, why)

    # Animation: flat, saturated colour fields
    s, why = 0.0, []
    if flat >= 0.25:
        s = 0.45 + 0.6 * _clamp(flat)
        why = [f"flat saturated colour fields ({flat:.0%} of the picture)"]
        if sat >= 0.5:
            s += 0.05
    add("Animation", s, why)

    # Story Narrative: people (faces) across several shots
    s, why = 0.0, []
    if face >= 0.15 and visual.shot_count >= 3:
        s = 0.45 + 0.5 * _clamp(face / 0.5) * 0.6 + 0.1 * _clamp((visual.shot_count - 3) / 5)
        why = [f"faces in {face:.0%} of frames", f"{visual.shot_count} shots"]
    add("Story Narrative", s, why)

    # Behind-the-Scenes: handheld shake, washed-out colour, unpolished look
    s, why = 0.0, []
    if visual.shake >= 0.5:
        s += 0.45 + 0.2 * _clamp((visual.shake - 0.5) / 1.5)
        why.append(f"handheld shake ({visual.shake:.2f})")
    if sat < 0.18:
        s += 0.3 if s else 0.1
        why.append(f"desaturated ({sat:.2f})")
    add("Behind-the-Scenes", s, why)

    # Live Performance: flashing stage light, darkness, fast cutting
    s, why = 0.0, []
    if visual.flicker >= 3.0:
        s += 0.35 + 0.15 * _clamp((visual.flicker - 3.0) / 5.0)
        why.append(f"flashing light ({visual.flicker:.1f})")
    if bright < 70 and s:
        s += 0.15
        why.append(f"dark stage ({bright:.0f})")
    if cpm >= 15:
        s += 0.25 if s else 0.1
        why.append(f"fast cutting ({cpm:.0f}/min)")
    add("Live Performance", s, why)

    # Dance Performance: strongly periodic motion (in time with the song when known)
    s, why = 0.0, []
    if visual.motion_periodicity >= 0.5 and motion >= 2.0:
        s = 0.4 + 0.4 * _clamp((visual.motion_periodicity - 0.5) / 0.4)
        why.append(f"rhythmic motion (periodicity {visual.motion_periodicity:.2f})")
        if _tempo_match(visual.motion_bpm, tempo):
            s += 0.15
            why.append(f"in time with the song ({visual.motion_bpm:.0f} vs {tempo:.0f} BPM)")
        if 4 <= cpm <= 30:
            s += 0.05
    add("Dance Performance", s, why)

    # Nature/Scenic: calm, colourful, horizontally layered views without people or text
    s, why = 0.0, []
    if layer >= 0.5 and face < 0.15 and text < 0.3 and sat >= 0.25:
        s = 0.4 + 0.3 * _clamp((layer - 0.5) / 0.3)
        why.append(f"horizon-like layering ({layer:.2f})")
        if cpm <= 10:
            s += 0.1
            why.append("long takes")
        if motion < 6:
            s += 0.1
            why.append("calm motion")
        if visual.motion_periodicity >= 0.6:
            s -= 0.2
    add("Nature/Scenic", s, why)

    # Artistic/Abstract: smooth, intensely colourful motion with no faces, text or horizon
    s, why = 0.0, []
    if colourful >= 70 and face < 0.15 and text < 0.3 and flat < 0.25:
        s = 0.4 + 0.3 * _clamp((colourful - 70) / 50)
        why.append(f"intense colour ({colourful:.0f})")
        if motion >= 8:
            s += 0.1
            why.append("restless motion")
        if layer < 0.3:
            s += 0.1
            why.append("no horizon")
        if edges < 0.05:
            s += 0.05
        if bright < 60:  # colour on a mostly black frame reads as stage light, not a pattern
            s -= 0.15
            why.append(f"but mostly dark ({bright:.0f})")
    add("Artistic/Abstract", s, why)

    # genres/tags break near-ties; only when the picture says little (best < 0.3) do they decide
    if track is not None:
        words = " ".join([*track.genres, *track.tags]).lower()
        weak = max(v[0] for v in scores.values()) < 0.3
        for mv, hints in _TAG_HINTS.items():
            hit = [h for h in hints if h in words]
            if hit:
                s, why = scores[mv]
                scores[mv] = (round(s + (0.3 if weak else 0.04), 4), why + [f"genres/tags: {', '.join(hit)}"])

    order = {mv: i for i, mv in enumerate(MV_TYPES)}
    ranked = sorted(((mv, s, why) for mv, (s, why) in scores.items()), key=lambda r: (-r[1], order[r[0]]))
    return ranked


def classify_mv_type(visual: VisualStats, captions: FrameCaptions | list[FrameCaption] | None = None,
                     track: Track | None = None) -> str:
    """The MV type (one of ``MV_TYPES``) with the strongest visual evidence.

    ``captions`` (a ``FrameCaptions`` or a list of ``FrameCaption``) are accepted for the
    stage interface; the rules read the statistics the captions were written from.
    With no evidence at all the fallback depends on motion: a motionless clip is a picture
    montage, anything else reads as artistic/abstract footage.
    """
    ranked = explain_mv_type(visual, captions, track)
    best, score, _ = ranked[0]
    if score <= 0.0:
        return "Static/Dynamic Picture Montage" if visual.static_score < 1.0 else "Artistic/Abstract"
    return best
