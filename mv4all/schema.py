"""Contract v1.2: every record that crosses a boundary in mv4all.

One place defines what a dataset row is (``Example``), what the builder's stages produce (the
output models) and the Hugging Face ``datasets.Features`` mirror of the row, what a predictions
file holds (``Prediction``), and what a whole-song MV script is (``SongScript``). Later work extends
this module and bumps ``SCHEMA_VERSION``; nothing else redefines these shapes. Records that never
leave the builder (stage inputs and results, video measurements) live in ``builders/``.
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = "1.2"
# 1.1: MVDescription.closing (the paper's closing sentence), Prediction.truncated
# 1.2: SongScript (a whole song's MV plan: facts, sections, shots, overview)

# The two time facts every stage shares (one home): Music4All clips are 30 s, and the paper samples
# one frame every 2 s (15 frames per clip). Training windows, describe, the frame sampler, the
# offline writers and the sample corpus all read them from here.
CLIP_SECONDS = 30.0
FRAME_STEP_SECONDS = 2.0

MVType = Literal[
    "Live Performance",
    "Lyric Video",
    "Animation",
    "Story Narrative",
    "Artistic/Abstract",
    "Dance Performance",
    "Behind-the-Scenes",
    "Nature/Scenic",
    "Static/Dynamic Picture Montage",
    "Cinematic Drama",
]
MV_TYPES: tuple[str, ...] = get_args(MVType)

ID_LENGTH = 16


class Record(BaseModel):
    """Base for contract records: unknown keys are errors, so drift is caught early."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- inputs


class Track(Record):
    """One Music4All track as read from its tab-separated CSVs (numbers parsed, blanks -> None)."""

    id: str
    artist: str
    song: str
    album_name: str = ""
    spotify_id: str = ""
    popularity: float | None = None
    release: str = ""
    danceability: float | None = None
    energy: float | None = None
    key: int | None = None
    mode: int | None = None
    valence: float | None = None
    tempo: float | None = None  # Music4All stores 0 for "unknown": read as None
    duration_ms: float | None = None
    genres: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    lang: str = ""

    @property
    def instrumental(self) -> bool:
        # Music4All spells it this way.
        return self.lang.strip().upper() in {"INTRUMENTAL", "INSTRUMENTAL"}


class Chord(Record):
    start: float
    end: float
    label: str  # madmom style, e.g. "A:min", "C:maj", "N" for no chord


class Beat(Record):
    time: float  # seconds from clip start
    number: int  # position in the bar, 1 = downbeat


class LibrosaDescriptors(Record):
    """Timbre/dynamics summary computed with librosa on the 44.1 kHz mono clip."""

    rms_mean: float
    rms_std: float
    loudness_db: float
    dynamic_range_db: float
    spectral_centroid_hz: float
    spectral_bandwidth_hz: float
    spectral_rolloff_hz: float
    spectral_flatness: float
    zero_crossing_rate: float
    onset_rate: float  # onsets per second
    percussive_ratio: float  # energy share of the HPSS percussive part
    chroma_mean: list[float]  # 12 values, C..B


class MusicFeatures(Record):
    """LLark-style measured music facts (madmom + librosa + Music4All metadata)."""

    duration: float
    tempo: float  # BPM
    tempo_strength: float  # 0..1, strength of the winning tempo
    beats_per_bar: int  # 0 = unknown (silence, or less than a bar of beats)
    beats: list[Beat]
    downbeats: list[float]
    key: str  # e.g. "A minor" (madmom's enharmonic spelling); "unknown" for silence
    key_confidence: float
    chords: list[Chord]
    energy: float | None = None
    valence: float | None = None
    danceability: float | None = None
    librosa: LibrosaDescriptors


# --------------------------------------------------------------------------- outputs


class FrameCaption(Record):
    t: float
    caption: str


class FrameCaptions(Record):
    captions: list[FrameCaption]


class MusicCaption(Record):
    caption: str


class LyricsUnderstanding(Record):
    text: str


class MVTypeTag(Record):
    mv_type: MVType


class UnifiedMusicCaption(Record):
    caption: str


class MVBeat(Record):
    title: str
    text: str


_OVERVIEW_RE = re.compile(r"^\W*overview\W*", re.IGNORECASE)
_BREAKDOWN_RE = re.compile(r"^\W*frame[\s-]*by[\s-]*frame(\s+breakdown)?\W*$", re.IGNORECASE)
_ITEM_RE = re.compile(r"^\s*(?:[-*]\s*)?(\d+)\s*[.)]\s*(.*)$")


def _unbold(text: str) -> str:
    return text.replace("**", "").replace("__", "").strip()


class MVDescription(Record):
    """The target: an overview, one beat per sampled frame and a closing sentence (paper, Figure 4)."""

    overview: str
    beats: list[MVBeat]
    closing: str = ""  # since contract 1.1; rendered as its own paragraph after the beats

    def render(self) -> str:
        lines = ["**Overview:**", self.overview.strip(), "", "**Frame-by-frame Breakdown:**"]
        for i, beat in enumerate(self.beats, start=1):
            lines.append(f"{i}. **{beat.title.strip()}:** {beat.text.strip()}")
        if self.closing.strip():
            lines += ["", self.closing.strip()]
        return "\n".join(lines)

    @classmethod
    def parse(cls, text: str) -> "MVDescription":
        """Read ``render()`` output back, tolerating what real models write.

        Accepts missing bold markers, ``Overview:`` on the same line as its text,
        extra blank lines and spaces, bullets, fewer beats, and beats without a title.
        Text that has no structure at all becomes the overview. A paragraph after a blank line
        that ends the beats is the closing sentence.
        """
        overview: list[str] = []
        beats: list[MVBeat] = []
        closing: list[str] = []
        section = "overview"
        for raw in text.splitlines():
            line = raw.strip()
            if not line:
                if section == "beats" and beats:
                    section = "after-beats"
                continue
            if section in ("after-beats", "closing") and not _ITEM_RE.match(line):
                section = "closing"
                closing.append(_unbold(line))
                continue
            if section == "after-beats":
                section = "beats"
            if _BREAKDOWN_RE.match(_unbold(line)):
                section = "beats"
                continue
            m = _ITEM_RE.match(line)
            if m and (section == "beats" or beats or overview):
                section = "beats"
                body = m.group(2).strip()
                title, sep, rest = _split_title(body)
                beats.append(MVBeat(title=title if sep else "", text=rest if sep else _unbold(body)))
                continue
            if section == "beats" and beats:
                beats[-1] = MVBeat(title=beats[-1].title, text=(beats[-1].text + " " + _unbold(line)).strip())
                continue
            plain = _unbold(line)
            if _OVERVIEW_RE.match(plain) and plain.lower().lstrip("#* ").startswith("overview"):
                plain = _OVERVIEW_RE.sub("", plain, count=1).strip()
                if not plain:
                    continue
            overview.append(plain)
        return cls(overview=" ".join(overview).strip(), beats=beats, closing=" ".join(closing).strip())


def _split_title(body: str) -> tuple[str, str, str]:
    """Split ``**Title:** text`` / ``Title: text`` / ``**Title**: text`` into parts."""
    m = re.match(r"^\*\*(.+?)\*\*\s*:?\s*(.*)$", body)
    if m:
        title = m.group(1).strip().rstrip(":").strip()
        return title, ":", _unbold(m.group(2))
    title, sep, rest = body.partition(":")
    if sep and 0 < len(title) <= 80:
        return _unbold(title), sep, _unbold(rest)
    return "", "", _unbold(body)


# --------------------------------------------------------------------------- provenance + row


class StageProvenance(Record):
    stage: str
    backend: str
    model: str
    prompt_version: str
    stage_version: int
    params_hash: str


class Provenance(Record):
    schema_version: str = SCHEMA_VERSION
    build_id: str
    stages: list[StageProvenance]


class Example(Record):
    """One dataset row (config ``mv_description``)."""

    id: str
    artist: str
    song: str
    genres: list[str]
    tags: list[str]
    mv_type: MVType
    lyrics_understanding: str
    audio: str
    music_features: MusicFeatures
    music_caption: str
    unified_music_caption: str
    frame_captions: list[FrameCaption]
    mv_description: MVDescription
    mv_description_text: str
    instruction: str
    static_score: float
    provenance: Provenance

    @field_validator("id")
    @classmethod
    def _id_length(cls, value: str) -> str:
        if len(value) != ID_LENGTH:
            raise ValueError(f"id must have {ID_LENGTH} characters, got {value!r}")
        return value

    @field_validator("audio")
    @classmethod
    def _relative_posix(cls, value: str) -> str:
        if value.startswith("/") or "\\" in value or re.match(r"^[A-Za-z]:", value):
            raise ValueError(f"audio must be a POSIX path relative to the Music4All root, got {value!r}")
        return value


class MusicCaptionExample(Record):
    """One row of config ``music_caption`` (stage-1 target)."""

    id: str
    audio: str
    music_caption: str
    instruction: str


# --------------------------------------------------------------------------- datasets mirror


def _features():
    from datasets import Features, List, Value

    f64, s = Value("float64"), Value("string")
    chord = {"start": f64, "end": f64, "label": s}
    music_features = {
        "duration": f64,
        "tempo": f64,
        "tempo_strength": f64,
        "beats_per_bar": Value("int32"),
        "beats": List({"time": f64, "number": Value("int32")}),
        "downbeats": List(f64),
        "key": s,
        "key_confidence": f64,
        "chords": List(chord),
        "energy": f64,
        "valence": f64,
        "danceability": f64,
        "librosa": {
            "rms_mean": f64,
            "rms_std": f64,
            "loudness_db": f64,
            "dynamic_range_db": f64,
            "spectral_centroid_hz": f64,
            "spectral_bandwidth_hz": f64,
            "spectral_rolloff_hz": f64,
            "spectral_flatness": f64,
            "zero_crossing_rate": f64,
            "onset_rate": f64,
            "percussive_ratio": f64,
            "chroma_mean": List(f64),
        },
    }
    stage = {
        "stage": s,
        "backend": s,
        "model": s,
        "prompt_version": s,
        "stage_version": Value("int32"),
        "params_hash": s,
    }
    mv_description = Features(
        {
            "id": s,
            "artist": s,
            "song": s,
            "genres": List(s),
            "tags": List(s),
            "mv_type": s,
            "lyrics_understanding": s,
            "audio": s,
            "music_features": music_features,
            "music_caption": s,
            "unified_music_caption": s,
            "frame_captions": List({"t": f64, "caption": s}),
            "mv_description": {"overview": s, "beats": List({"title": s, "text": s}), "closing": s},
            "mv_description_text": s,
            "instruction": s,
            "static_score": f64,
            "provenance": {"schema_version": s, "build_id": s, "stages": List(stage)},
        }
    )
    music_caption = Features({"id": s, "audio": s, "music_caption": s, "instruction": s})
    return mv_description, music_caption


def dataset_features(config: str = "mv_description"):
    """The ``datasets.Features`` of a config; equal to what the built parquet declares."""
    mv_description, music_caption = _features()
    return {"mv_description": mv_description, "music_caption": music_caption}[config]


CONFIGS = ("mv_description", "music_caption")


# --------------------------------------------------------------------------- build report


class FailureRecord(Record):
    """One line of ``failures.jsonl``: a clip that did not make it into a config, and why.

    ``kind`` is "error" for broken or missing input and failed stages, "dropped" for clips
    the static filter removed on purpose (their music stays in ``music_caption``).
    """

    id: str
    stage: str
    kind: Literal["error", "dropped"] = "error"
    reason: str


# --------------------------------------------------------------------------- predictions


class Prediction(Record):
    """One line of a predictions JSONL file: what batch ``describe`` writes and ``evaluate`` reads.

    Only ``id`` and ``prediction`` are required so that predictions from any system can be
    scored; ``reference`` may be left out and filled from the dataset by id. The rest records
    which run made the text, so a leaderboard row can be traced back to its model and inputs.
    """

    id: str
    prediction: str
    reference: str | None = None
    run: str | None = None  # a name for the system/checkpoint that produced the text
    train_inputs: str | None = None  # input combination the model was trained with, e.g. "1+2+3+4"
    eval_inputs: str | None = None  # combination given at inference, e.g. "1+2+3+4" or "none"
    decoding: dict[str, Any] = Field(default_factory=dict)  # generation settings (max_new_tokens, sampling, ...)
    seed: int | None = None
    model_sha: str | None = None  # revision/hash of the weights that produced the text
    truncated: bool | None = None  # since 1.1: the length limit ended the text, not the model (None: unknown)


# --------------------------------------------------------------------------- whole songs (since 1.2)


class SongSection(Record):
    """A structural section of a song (intro/verse/chorus-like), its bounds on downbeats."""

    start: float  # seconds from the song start
    end: float
    label: str  # "A", "B", ...: sections with the same label sound alike (repeats of one part)


class Shot(Record):
    """One shot of the MV plan: a time span on the song's own clock and what the picture shows."""

    start: float  # seconds from the song start
    end: float
    section: str  # label of the section the shot starts in
    title: str = ""  # the frame's title from the breakdown ("Opening Shot", ...)
    text: str


class SongFacts(Record):
    """What was measured once on the whole song (the builder's feature code)."""

    duration: float
    tempo: float  # BPM
    beats_per_bar: int  # 0 = unknown
    key: str  # e.g. "A minor"; "unknown" for silence
    downbeats: list[float] = Field(default_factory=list)
    chords: list[Chord] = Field(default_factory=list)


class SongWindow(Record):
    """One model call: the 30 s of audio it heard and the section it was aligned to."""

    start: float
    end: float  # start + the model's window length (the last window may run past the song: padded)
    section: str


class SongScript(Record):
    """A whole song's MV plan: ``mv4all describe --whole-song`` writes it, ``shots`` and ``storyboard`` read it.

    Shots cover the song from 0 to ``facts.duration`` without gap or overlap; their times are absolute.
    """

    schema_version: str = SCHEMA_VERSION
    source: str  # the audio file's name (no directory: scripts are shared)
    model: str | None = None  # the run that described it
    facts: SongFacts
    sections: list[SongSection]
    windows: list[SongWindow] = Field(default_factory=list)
    mv_type: str = ""  # fixed across windows
    genres: list[str] = Field(default_factory=list)
    lyrics_understanding: str = ""
    overview: str
    shots: list[Shot]

    def render_markdown(self) -> str:
        """The script for people: facts, sections, then one line per shot with its times."""

        def clock(t: float) -> str:
            return f"{int(t // 60)}:{t % 60:05.2f}"

        f = self.facts
        lines = [f"# MV script: {self.source}", "",
                 f"{clock(f.duration)} · {f.tempo:.0f} BPM · {f.key}"
                 + (f" · {f.beats_per_bar}/4" if f.beats_per_bar else "")
                 + (f" · {self.mv_type}" if self.mv_type else ""), "", "**Overview:**", self.overview.strip(), "",
                 "**Sections:** " + ", ".join(f"{s.label} {clock(s.start)}-{clock(s.end)}" for s in self.sections),
                 "", "**Shots:**"]
        for i, shot in enumerate(self.shots, start=1):
            title = f"**{shot.title.strip()}:** " if shot.title.strip() else ""
            lines.append(f"{i}. [{clock(shot.start)}-{clock(shot.end)}, {shot.section}] {title}{shot.text.strip()}")
        return "\n".join(lines) + "\n"
