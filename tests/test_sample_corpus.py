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


def test_cli_sample_writes_a_small_valid_corpus(tmp_path):
    import json

    import av
    from typer.testing import CliRunner

    from mv4all.audio import load_audio
    from mv4all.cli import app

    out = tmp_path / "corpus"
    res = CliRunner().invoke(app, ["sample", str(out), "--clips", "1", "--seed", "3"])
    assert res.exit_code == 0, res.output
    corpus = read_music4all(out)
    assert len(corpus.tracks) == 1 and not corpus.failures
    (cid,) = corpus.tracks
    for name, header in HEADERS.items():
        with (out / name).open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        assert rows[0] == header and len(rows) == 2 and rows[1][0] == cid, name
    (truth,) = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text(encoding="utf-8").splitlines()]
    assert truth["id"] == cid
    assert load_audio(out / "audios" / f"{cid}.mp3", sr=16000).shape[-1] == 30 * 16000
    with av.open(str(out / "videos" / f"{cid}.mp4")) as video:
        stream = video.streams.video[0]
        assert abs(float(stream.duration * stream.time_base) - 30.0) < 0.5
        assert next(video.decode(stream)).to_ndarray(format="rgb24").std() > 0  # a picture, not a blank
    assert (out / "lyrics" / f"{cid}.txt").read_text(encoding="utf-8").strip() or truth["instrumental"]
    # a folder that holds other files is not written into
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    res = CliRunner().invoke(app, ["sample", str(other), "--clips", "1"])
    assert res.exit_code == 2 and "is not empty" in res.output
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
