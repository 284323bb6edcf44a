from builders.music4all import read_music4all, write_table

IDS = ["a" * 16, "b" * 16, "c" * 16, "d" * 16]


def _corpus(tmp_path):
    write_table(tmp_path / "id_information.csv", ["id", "artist", "song", "album_name"],
                [[i, f"Artist {n}", f'Song "{n}"', "Album"] for n, i in enumerate(IDS)])
    write_table(tmp_path / "id_metadata.csv",
                ["id", "spotify_id", "popularity", "release", "danceability", "energy", "key", "mode", "valence",
                 "tempo", "duration_ms"],
                [[IDS[0], "x", "10", "2001", "0.5", "0.6", "3", "1", "0.7", "0", "1000"],
                 [IDS[1], "y", "NA", "", "0.5", "oops", "3", "1", "0.7", "120.5", "1000"],
                 [IDS[3], "z", "", "", "", "", "", "", "", "", ""]])
    write_table(tmp_path / "id_genres.csv", ["id", "genres"], [[IDS[0], "rock, indie rock"], [IDS[3], ""]])
    write_table(tmp_path / "id_tags.csv", ["id", "tags"], [[IDS[0], "loud,guitar"]])
    write_table(tmp_path / "id_lang.csv", ["id", "lang"], [[IDS[0], "en"], [IDS[3], "INTRUMENTAL"]])
    return tmp_path


def test_reader_parses_and_reports(tmp_path):
    corpus = read_music4all(_corpus(tmp_path))
    a = corpus.tracks[IDS[0]]
    assert a.song == 'Song "0"' and a.genres == ["rock", "indie rock"] and a.tags == ["loud", "guitar"]
    assert a.tempo is None and a.energy == 0.6 and a.key == 3  # tempo 0 means unknown in Music4All
    d = corpus.tracks[IDS[3]]
    assert d.genres == [] and d.tags == [] and d.instrumental and d.energy is None
    reasons = {f.id: f.reason for f in corpus.failures}
    assert "energy" in reasons[IDS[1]] and "oops" in reasons[IDS[1]]
    assert "missing metadata row" in reasons[IDS[2]]
    assert set(corpus.tracks) == {IDS[0], IDS[3]}
