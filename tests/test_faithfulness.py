"""Music faithfulness: hand-written sentences with known claims, and known verdicts against facts."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from mv4all.metrics import Facts, check_text, extract_claims, music_faithfulness
from mv4all.metrics.faithfulness import lexicon
from mv4all.schema import MusicFeatures


def claims(text: str) -> set[tuple]:
    return {(c.type, c.value) for c in extract_claims(text)}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The song races along at 128 BPM.", {("tempo", (128.0, 128.0))}),
        ("It moves at ninety-six beats per minute.", {("tempo", (96.0, 96.0))}),
        ("A pulse of a hundred and twenty beats per minute drives it.", {("tempo", (120.0, 120.0))}),
        ("Somewhere between 118-124 BPM.", {("tempo", (118.0, 124.0))}),
        ("The tempo is around 140 and never lets up.", {("tempo", (140.0, 140.0))}),
        ("The ballad is set in F sharp minor.", {("key", (6, "minor"))}),
        ("It is written in E-flat major.", {("key", (3, "major"))}),
        ("A lament in Bb minor.", {("key", (10, "minor"))}),
        ("The key of C major keeps it bright.", {("key", (0, "major"))}),
        ("A gloomy minor-key ballad.", {("key", (None, "minor")), ("mood", "negative")}),
        ("A major shift happens when the band enters.", set()),  # sentence-initial article, not a key
        ("The pad holds an A minor chord.", set()),  # a chord is not the key
        ("Counted in 3/4, it sways in waltz time.", {("meter", "3/4")}),
        ("A straight beat in common time.", {("meter", "4/4")}),
        ("The video fills 3/4 of the frame with sky.", set()),
        ("A slow, brooding ballad.", {("tempo", "slow"), ("mood", "negative")}),
        ("It is a fast song.", {("tempo", "fast")}),
        ("An up-tempo dance-pop anthem full of energy.", {("tempo", "fast"), ("genre", "pop"), ("energy", "high")}),
        ("A gentle 72 BPM pulse.", {("tempo", "relaxed"), ("tempo", (72.0, 72.0))}),  # gentle + tempo noun = tempo
        ("A gentle piano melody.", {("energy", "low")}),
        ("The tone is upbeat and playful.", {("mood", "positive")}),
        ("A groovy, highly danceable track.", {("danceability", "high")}),
        ("A sad hip-hop track.", {("mood", "negative"), ("genre", "hip hop")}),
        ("This rock-tinged punk song snarls.", {("genre", "rock"), ("genre", "punk")}),
        ("The MV is a lyric video with cinematic framing.", {("mv_type", "Lyric Video")}),
        ("An animated music video about a fox who sneaks into a live concert video.", {("mv_type", "Animation")}),
        ("A story-driven narrative video set in a small town.", {("mv_type", "Story Narrative")}),
        # pictures, not music
        ("A slow pan across fast cuts and dark lighting.", set()),
        ("Slow-motion shots of a calm lake at dusk.", set()),
        ("A house by the country road, a rock on the shore.", set()),
        ("Rock-steady downbeats and a soft-edged pulse.", set()),
        ("The quiet verse explodes into the chorus.", set()),  # a section, not the song
        ("The intro energy is restrained.", set()),
        ("A slow pan reveals the band.", set()),  # the first noun met is a picture
        ("Fast cuts sync to the song.", set()),
        ("The animated crowd cheers.", set()),
        ("A gentle piano interlude.", set()),
        # the MV type comes from the overview; a frame showing a performance is scene content
        ("**Overview:**\nA road movie.\n\n**Frame-by-frame Breakdown:**\n1. **End:** A live performance video.", set()),
        # negations are dropped
        ("The song is not fast.", set()),
        ("The track never feels slow.", set()),
        ("The tune isn't in a major key.", set()),
        ("A song that is neither fast nor slow.", set()),
        ("It is not a lyric video; it is a dance performance video.", {("mv_type", "Dance Performance")}),
        ("Not 120 BPM but ninety beats per minute.", {("tempo", (90.0, 90.0))}),
    ],
)
def test_extracts_known_claims(text, expected):
    assert claims(text) == expected


def mf(**kw) -> dict:
    base = dict(duration=30.0, tempo=100.0, tempo_strength=0.8, beats_per_bar=4, beats=[], downbeats=[],
                key="F# minor", key_confidence=0.8, chords=[], energy=0.5, valence=0.5, danceability=0.5,
                librosa=dict(rms_mean=0.1, rms_std=0.01, loudness_db=-12.0, dynamic_range_db=8.0,
                             spectral_centroid_hz=2000.0, spectral_bandwidth_hz=1500.0, spectral_rolloff_hz=4000.0,
                             spectral_flatness=0.05, zero_crossing_rate=0.05, onset_rate=2.0,
                             percussive_ratio=0.4, chroma_mean=[0.1] * 12))
    return MusicFeatures(**{**base, **kw}).model_dump()


def row(mv_type="Animation", genres=("indie rock",), **features) -> dict:
    return {"mv_type": mv_type, "genres": list(genres), "music_features": mf(**features)}


def verdicts(text: str, r) -> list[str]:
    return [c.verdict for c in check_text(text, r)]


@pytest.mark.parametrize(
    "text, facts, expected",
    [
        ("It runs at 104 BPM.", {}, "right"),  # within 4 % of 100
        ("It runs at 96 BPM.", {}, "right"),
        ("It runs at 105 BPM.", {}, "wrong"),
        ("It runs at 50 BPM.", {}, "wrong"),  # half time is not accepted
        ("A slow song.", {"tempo": 70.0}, "right"),
        ("A fast song.", {"tempo": 70.0}, "wrong"),
        ("A fast song.", {"tempo": 112.0}, "right"),  # bands overlap at the edges
        ("A song at a moderate tempo.", {"tempo": 112.0}, "right"),
        ("A frantic song.", {"tempo": 120.0}, "wrong"),
        ("A slow song.", {"tempo": 0.0}, "uncheckable"),
        ("It sits in G-flat minor.", {}, "right"),  # enharmonic of F# minor
        ("It sits in A major.", {}, "wrong"),  # the relative major is another key
        ("It sits in F# major.", {}, "wrong"),
        ("It sits in C minor.", {}, "wrong"),
        ("A minor-key song.", {}, "right"),
        ("A major-key song.", {}, "wrong"),
        ("It sits in A major.", {"key": "unknown"}, "uncheckable"),
        ("Set in 4/4.", {"beats_per_bar": 3}, "wrong"),
        ("A lilting waltz time.", {"beats_per_bar": 3}, "right"),
        ("A swaying 6/8.", {"beats_per_bar": 2}, "right"),
        ("Set in 4/4.", {"beats_per_bar": 0}, "uncheckable"),
        ("A calm song.", {"energy": 0.5}, "right"),  # neutral middle: neither word is wrong
        ("An intense song.", {"energy": 0.5}, "right"),
        ("A calm song.", {"energy": 0.9}, "wrong"),
        ("An intense song.", {"energy": 0.2}, "wrong"),
        ("A calm song.", {"energy": None}, "uncheckable"),
        ("A melancholic song.", {"valence": 0.8}, "wrong"),
        ("A joyful song.", {"valence": 0.8}, "right"),
        ("A danceable tune.", {"danceability": 0.3}, "wrong"),
    ],
)
def test_checks_claims_against_facts(text, facts, expected):
    assert verdicts(text, row(**facts)) == [expected]


def test_genre_and_mv_type_checks():
    r = row(mv_type="Animation", genres=["indie rock"])
    assert verdicts("A rock song.", r) == ["right"]
    assert verdicts("An indie song.", r) == ["right"]
    assert verdicts("A jazz tune.", r) == ["wrong"]
    assert verdicts("A hip-hop track.", row(genres=["rap"])) == ["right"]
    assert verdicts("A rock song.", row(genres=["soundtrack"])) == ["uncheckable"]  # no family known
    assert verdicts("An animated music video.", r) == ["right"]
    assert verdicts("A lyric video.", r) == ["wrong"]


def test_facts_from_rows_of_every_shape():
    r = row(tempo=120.0, key="Bb major")
    as_json = {**r, "music_features": json.dumps(r["music_features"])}
    as_model = {**r, "music_features": MusicFeatures(**r["music_features"])}
    facts = [Facts.from_row(x) for x in (r, as_json, as_model)]
    assert facts[0] == facts[1] == facts[2]
    assert facts[0].key == (10, "major") and facts[0].tempo == 120.0 and facts[0].genres == ("indie rock",)
    assert Facts.from_row(row(key="unknown", beats_per_bar=0)).key is None


ROW_A = row(mv_type="Lyric Video", genres=["pop"], tempo=84.0, key="A minor", energy=0.3, valence=0.2)
ROW_B = row(mv_type="Lyric Video", genres=["pop"], tempo=150.0, key="D major", energy=0.3, valence=0.2)
REFERENCE_A = ("**Overview:**\nThe MV for this pop song is a lyric video. Its melancholic mood rides a slow "
               "84 BPM pulse in A minor, with a subdued energy level.\n\n**Frame-by-frame Breakdown:**\n"
               "1. **Opening Scene:** White words fade in over a grey street.")


def test_copying_the_reference_claims_scores_one_and_swapping_facts_lowers_it():
    assert len(extract_claims(REFERENCE_A)) >= 6
    same = music_faithfulness([REFERENCE_A], [ROW_A])
    assert same.score == 1.0 and same.coverage == 1.0
    swapped = REFERENCE_A.replace("84 BPM", "150 BPM").replace("A minor", "D major")
    assert music_faithfulness([swapped], [ROW_B]).per_type["key"].precision == 1.0  # B's key is right for B
    worse = music_faithfulness([swapped], [ROW_A])
    assert worse.score < 1.0
    assert worse.per_type["tempo"].precision == 0.5  # "slow" still right, "150 BPM" wrong
    assert worse.per_type["key"].precision == 0.0


def test_no_claims_means_no_coverage_and_no_precision():
    plain = "A woman walks through a market at dawn, then smiles at the camera."
    res = music_faithfulness([plain, plain], [ROW_A, ROW_B])
    assert res.coverage == 0.0 and res.score is None and res.macro_precision is None
    assert all(t.coverage == 0.0 and t.precision is None for t in res.per_type.values())
    mixed = music_faithfulness([plain, REFERENCE_A], [ROW_A, ROW_A])  # the silent one is not counted wrong
    assert mixed.score == 1.0 and mixed.coverage == 0.5 and mixed.per_type["key"].coverage == 0.5
    d = mixed.to_dict()
    assert d["per_type"]["tempo"]["precision"] == 1.0 and 0.0 <= d["coverage"] <= 1.0
    with pytest.raises(ValueError):
        music_faithfulness([plain], [ROW_A, ROW_B])


def test_identical_claims_count_once():
    res = music_faithfulness(["A 100 BPM song. Again: 100 BPM, 100 BPM."], [row()])
    assert res.per_type["tempo"].checked == 1


def test_word_lists_are_package_data_and_the_library_stays_a_library():
    data = Path(__file__).resolve().parents[1] / "mv4all" / "metrics" / "data" / "faithfulness.json"
    assert json.loads(data.read_text(encoding="utf-8"))["tempo"] and lexicon()["phrases"]
    for name in ("faithfulness.py", "structure.py"):
        tree = ast.parse((data.parents[1] / name).read_text(encoding="utf-8"))
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m.split(".")[0] for m in imported} & {"builders", "train", "eval"}


def test_quality_scores_and_table_for_an_evaluate_run():
    """The second table of `mv4all evaluate`: structure always, faithfulness when the rows are known."""
    from rich.console import Console

    from mv4all.metrics import quality_scores, quality_table
    from mv4all.schema import MVBeat, MVDescription

    rows = [{"id": "a", "music_features": {"tempo": 128.0, "key": "E minor", "beats_per_bar": 4},
             "mv_type": "Live Performance", "genres": ["rock"]},
            {"id": "b", "music_features": {"tempo": 70.0, "key": "C major", "beats_per_bar": 3},
             "mv_type": "Animation", "genres": ["jazz"]}]
    beats = [MVBeat(title=f"Shot {i}", text="The drummer counts in under red light.") for i in range(15)]
    fit = MVDescription(overview="A live performance video: the band plays a fast rock song in E minor at 128 BPM.",
                        beats=beats).render()
    wrong = fit.replace("E minor", "C major").replace("128", "70")
    right = quality_scores([fit, fit], [rows[0], rows[0]])
    swapped = quality_scores([wrong], [rows[0]])
    assert right.faithfulness.score == 1.0 and right.structure.parse_rate == 1.0
    assert right.structure.mean_frames == 15 and right.structure.truncation_rate == 0.0
    assert swapped.faithfulness.score < 1.0
    assert swapped.faithfulness.per_type["key"].precision == 0.0
    assert swapped.faithfulness.per_type["tempo"].precision == 0.5  # "70 BPM" wrong, "fast" still right
    text_only = quality_scores([fit[:-40]])
    assert text_only.faithfulness is None and text_only.structure.truncation_rate == 1.0
    console = Console(width=200, record=True)
    console.print(quality_table({"fits": right, "swapped": swapped, "cut": text_only}))
    out = console.export_text()
    assert "fits" in out and "100.0" in out and "swapped" in out
    assert right.to_dict()["faithfulness"]["score"] == 1.0 and text_only.to_dict()["faithfulness"] is None
