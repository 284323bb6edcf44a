"""What the embedded sample corpus contains: one ``ClipSpec`` per synthetic track.

The default corpus is designed to exercise the builder: several tonics and both modes,
slow and fast tempi, 3/4 and 4/4, every kind of video the static filter must judge
(moving, single still, slideshow of stills, slow zoom/pan montage), and Music4All's
real quirks (``INTRUMENTAL`` with empty lyrics, non-ASCII lyrics, metadata tempo 0).
"""

from __future__ import annotations

import hashlib
import random
import string
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

VideoKind = Literal["moving", "still", "slideshow", "ken_burns"]

TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


@dataclass(frozen=True)
class ClipSpec:
    id: str
    artist: str
    song: str
    album: str
    tonic: str  # one of TONICS
    mode: Literal["major", "minor"]
    tempo: float  # true BPM of the synthesised audio
    beats_per_bar: Literal[3, 4]
    genres: tuple[str, ...]
    tags: tuple[str, ...]
    lang: str  # ISO code, or "INTRUMENTAL" (Music4All's spelling) for instrumentals
    lyrics_themes: tuple[str, ...]  # themes the generated lyrics are about; () for instrumentals
    mv_style: str  # intended MV type (one of mv4all.schema.MV_TYPES)
    video_kind: VideoKind
    palette: str  # main colour family of the video ("red", "blue", "green", ...)
    energy: float
    valence: float
    danceability: float
    metadata_tempo: float  # what id_metadata.csv says (0 = unknown, a real quirk)
    seed: int
    extra: dict = field(default_factory=dict)

    @property
    def key_name(self) -> str:
        return f"{self.tonic} {self.mode}"

    @property
    def instrumental(self) -> bool:
        return self.lang == "INTRUMENTAL"

    @property
    def expect_dropped(self) -> bool:
        return self.video_kind in ("still", "slideshow")

    def as_dict(self) -> dict:
        return asdict(self)


def make_id(seed: int, index: int) -> str:
    """A 16-character Music4All-looking id, deterministic in (seed, index)."""
    digest = hashlib.sha256(f"mv4all-sample:{seed}:{index}".encode()).digest()
    alphabet = string.ascii_letters + string.digits
    return "".join(alphabet[b % len(alphabet)] for b in digest[:16])


# (artist, song, tonic, mode, tempo, meter, genres, tags, lang, themes, style, video, palette, e, v, d, meta_tempo)
_DEFAULT = [
    ("Neon Harbor", "Paper Satellites", "C", "major", 120, 4,
     ("pop", "synthpop"), ("catchy", "upbeat"), "en", ("love", "night"),
     "Lyric Video", "moving", "pink", 0.72, 0.81, 0.74, 120.0),
    ("The Quiet Engines", "Ashes on the Tide", "A", "minor", 90, 4,
     ("rock", "ballad"), ("melancholic", "guitar"), "en", ("heartbreak", "memory"),
     "Cinematic Drama", "moving", "blue", 0.41, 0.22, 0.38, 90.1),
    ("Riot Saints", "Burn the Stage", "G", "major", 150, 4,
     ("punk", "rock"), ("energetic", "live"), "en", ("rebellion", "freedom"),
     "Live Performance", "moving", "red", 0.93, 0.64, 0.52, 149.8),
    ("Willow & Fern", "River Waltz", "E", "minor", 75, 3,
     ("folk", "acoustic"), ("calm", "waltz"), "en", ("nature", "home"),
     "Nature/Scenic", "moving", "green", 0.28, 0.46, 0.41, 75.2),
    ("Pulse Theory", "Midnight Mechanics", "D", "major", 128, 4,
     ("electronic", "house"), ("dance", "club"), "en", ("dance", "night"),
     "Dance Performance", "moving", "purple", 0.86, 0.77, 0.88, 128.0),
    ("Fractal Bloom", "Kaleidoscope Lungs", "F#", "minor", 170, 4,
     ("drum and bass", "electronic"), ("fast", "experimental"), "en", ("dreams", "time"),
     "Artistic/Abstract", "moving", "orange", 0.95, 0.48, 0.61, 170.0),
    ("Lil Cartographer", "Streetlight Letters", "Bb", "major", 95, 4,
     ("hip hop", "rap"), ("storytelling", "urban"), "en", ("city", "struggle"),
     "Story Narrative", "moving", "yellow", 0.66, 0.55, 0.79, 95.0),
    ("Marigold Circus", "Tin Toy Parade", "F", "major", 110, 3,
     ("jazz", "swing"), ("playful", "quirky"), "en", ("childhood", "joy"),
     "Animation", "moving", "cyan", 0.58, 0.90, 0.63, 110.0),
    ("Iron Vesper", "Cathedral of Static", "C", "minor", 145, 4,
     ("metal", "heavy metal"), ("aggressive", "loud"), "en", ("anger", "war"),
     "Live Performance", "moving", "red", 0.97, 0.18, 0.33, 145.0),
    ("Velvet Almanac", "Polaroid Summer", "Eb", "major", 84, 4,
     ("soul", "r&b"), ("warm", "nostalgic"), "en", ("memory", "summer"),
     "Static/Dynamic Picture Montage", "ken_burns", "orange", 0.47, 0.71, 0.58, 84.0),
    ("Static Lanterns", "One Photograph", "B", "minor", 100, 4,
     ("indie", "indie rock"), ("lo-fi", "sad"), "en", ("loneliness", "memory"),
     "Static/Dynamic Picture Montage", "still", "gray", 0.39, 0.27, 0.45, 100.0),
    ("Glass Arcade", "Slides of You", "D", "minor", 132, 4,
     ("synthpop", "new wave"), ("retro", "80s"), "en", ("love", "distance"),
     "Static/Dynamic Picture Montage", "slideshow", "blue", 0.69, 0.42, 0.70, 132.0),
    ("Dusty Hollow Band", "Backroad Sessions", "A", "major", 160, 3,
     ("country", "bluegrass"), ("fiddle", "live"), "en", ("road", "friendship"),
     "Behind-the-Scenes", "moving", "brown", 0.74, 0.80, 0.55, 160.0),
    ("Aurora Fields", "Glacier Hymn", "G", "minor", 70, 4,
     ("ambient", "instrumental"), ("atmospheric", "slow"), "INTRUMENTAL", (),
     "Nature/Scenic", "moving", "teal", 0.18, 0.35, 0.22, 70.0),
    ("Seoul Prism", "Starlight Step", "E", "major", 124, 4,
     ("k-pop", "dance pop"), ("idol", "choreography"), "ko", ("love", "dance"),
     "Dance Performance", "moving", "pink", 0.88, 0.85, 0.86, 124.0),
    ("Corazón Eléctrico", "Canción del Faro", "C#", "minor", 115, 4,
     ("latin", "latin pop"), ("romantic", "spanish"), "es", ("love", "sea"),
     "Lyric Video", "moving", "yellow", 0.63, 0.58, 0.77, 115.0),
    ("Pixel Lagoon", "Turbo Lullaby", "F", "minor", 176, 4,
     ("electronic", "chiptune"), ("video game", "fast"), "en", ("adventure", "dreams"),
     "Animation", "moving", "green", 0.90, 0.66, 0.69, 176.0),
    ("Marble Choir", "Ninety Two Candles", "Ab", "major", 92, 3,
     ("classical", "neoclassical"), ("piano", "instrumental"), "INTRUMENTAL", (),
     "Static/Dynamic Picture Montage", "still", "white", 0.21, 0.52, 0.30, 0.0),
]


def default_specs(clips: int = 18, seed: int = 0) -> list[ClipSpec]:
    """The designed corpus; more clips than designed are variations (new tempo/key/seed)."""
    if clips < 1:
        raise ValueError("clips must be >= 1")
    rng = random.Random(seed)
    out: list[ClipSpec] = []
    for i in range(clips):
        base = _DEFAULT[i % len(_DEFAULT)]
        (artist, song, tonic, mode, tempo, meter, genres, tags, lang, themes, style, video, palette,
         e, v, d, meta) = base
        if i >= len(_DEFAULT):  # a variation: same style, different music
            tonic = rng.choice(TONICS)
            mode = rng.choice(("major", "minor"))
            tempo = float(rng.randrange(70, 180))
            meta = tempo
            song = f"{song} (Variation {i // len(_DEFAULT)})"
        out.append(
            ClipSpec(
                id=make_id(seed, i),
                artist=artist,
                song=song,
                album=f"{song.split(' (')[0]} - Single",
                tonic=tonic,
                mode=mode,
                tempo=float(tempo),
                beats_per_bar=meter,
                genres=genres,
                tags=tags,
                lang=lang,
                lyrics_themes=themes,
                mv_style=style,
                video_kind=video,
                palette=palette,
                energy=e,
                valence=v,
                danceability=d,
                metadata_tempo=float(meta),
                seed=seed * 1000 + i,
            )
        )
    return out


def with_overrides(spec: ClipSpec, **changes) -> ClipSpec:
    return replace(spec, **changes)
