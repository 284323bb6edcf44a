"""The embedded sample corpus has the exact Music4All layout and the designed variety."""

import csv

from builders.music4all import read_music4all
from mv4all.schema import ID_LENGTH

HEADERS = {
    "id_information.csv": ["id", "artist", "song", "album_name"],
    "id_metadata.csv": ["id", "spotify_id", "popularity", "release", "danceability", "energy", "key", "mode",
                        "valence", "tempo", "duration_ms"],
    "id_genres.csv": ["id", "genres"],
    "id_tags.csv": ["id", "tags"],
    "id_lang.csv": ["id", "lang"],
}


def test_layout(sample_corpus):
    for name, header in HEADERS.items():
        with (sample_corpus / name).open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        assert rows[0] == header
        assert len(rows) == 19 and all(len(r) == len(header) for r in rows)
    corpus = read_music4all(sample_corpus)
    assert len(corpus.tracks) == 18 and not corpus.failures
    for cid in corpus.tracks:
        assert len(cid) == ID_LENGTH
        assert (sample_corpus / "audios" / f"{cid}.mp3").stat().st_size > 10_000
        assert (sample_corpus / "videos" / f"{cid}.mp4").stat().st_size > 10_000
        assert (sample_corpus / "lyrics" / f"{cid}.txt").is_file()


def test_designed_variety(sample_build):
    truth = sample_build.ground_truth
    assert len(truth) >= 16
    music = [t["music"] for t in truth]
    tonics = {m["key"].split()[0] for m in music}
    modes = {m["key"].split()[1] for m in music}
    assert len(tonics) >= 6 and modes == {"major", "minor"}
    assert sum(m["tempo"] < 100 for m in music) >= 3 and sum(m["tempo"] > 140 for m in music) >= 3
    assert {m["beats_per_bar"] for m in music} == {3, 4}
    kinds = [t["video_kind"] for t in truth]
    assert "still" in kinds and "slideshow" in kinds and kinds.count("ken_burns") == 1
    assert len({t["palette"] for t in truth}) >= 6 and len({t["mv_style"] for t in truth}) >= 8


def test_real_data_quirks(sample_corpus, sample_build):
    corpus = read_music4all(sample_corpus)
    instrumental = [t for t in corpus.tracks.values() if t.lang == "INTRUMENTAL"]
    assert instrumental and all(corpus.read_lyrics(t.id) == "" for t in instrumental)
    assert any(t.tempo is None for t in corpus.tracks.values())  # metadata tempo 0
    lyrics = [corpus.read_lyrics(cid) for cid in corpus.tracks]
    assert any(any(ord(ch) > 127 for ch in text) for text in lyrics)
