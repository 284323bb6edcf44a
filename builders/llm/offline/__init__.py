"""The ``offline`` backend: deterministic, network-free stand-ins for the six LLM stages.

Every text is written from what the builder measured (madmom/librosa music features,
Music4All metadata, lyrics statistics, visual statistics), never invented from nothing:
a tempo in a caption is the tracked tempo, a chord in a beat is the chord sounding at
that frame's time. Phrasing varies between clips, chosen from a hash of the clip id, so
the corpus is not one template repeated; identical inputs give byte-identical outputs.

It is labelled honestly: ``model`` is "offline-template" (text stages) or
"offline-visual-stats" (vision stages), usage is zero, and every result carries
``notes["label"] = "offline heuristic text, not LLM output"``.

One job per module: ``backend`` (the class), ``captions`` (music and unified captions),
``lyrics`` (lyrics understanding), ``mv_writer`` (MV description), ``visual`` (frame
captions, MV type), ``music`` (musical facts as phrases), ``text`` (English helpers),
``lexicon`` (the word lists in ``data/``).
"""

from __future__ import annotations

from builders.llm.offline.backend import (
    LABEL,
    PROMPT_VERSION,
    TEMPLATE_VERSION,
    TEXT_MODEL,
    VISION_MODEL,
    OfflineBackend,
)
from builders.llm.offline.captions import write_music_caption, write_unified_caption
from builders.llm.offline.lyrics import (
    MAX_LYRIC_RUN,
    detect_language,
    detect_themes,
    limit_lyric_overlap,
    themes_from_summary,
    write_lyrics_understanding,
)
from builders.llm.offline.music import MusicFacts, pretty_chord
from builders.llm.offline.mv_writer import write_mv_description
from builders.llm.offline.visual import caption_frames, classify_mv_type, explain_mv_type
from builders.textcheck import longest_shared_run

__all__ = [
    "LABEL",
    "MAX_LYRIC_RUN",
    "PROMPT_VERSION",
    "TEMPLATE_VERSION",
    "TEXT_MODEL",
    "VISION_MODEL",
    "MusicFacts",
    "OfflineBackend",
    "caption_frames",
    "classify_mv_type",
    "detect_language",
    "detect_themes",
    "explain_mv_type",
    "limit_lyric_overlap",
    "longest_shared_run",
    "pretty_chord",
    "themes_from_summary",
    "write_lyrics_understanding",
    "write_music_caption",
    "write_mv_description",
    "write_unified_caption",
]
