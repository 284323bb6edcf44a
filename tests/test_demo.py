"""A reduced ``mv4all demo`` (CI size): the whole user path, and the structure of every file it writes.

The learning targets are checked by the full demo itself (it exits non-zero when they are missed);
here the plan is ``--quick`` (a 2-layer model, a few steps), so only the files and the report count.
"""

from __future__ import annotations

import json
import shutil

import pytest

from mv4all.metrics import read_predictions
from mv4all.schema import MVDescription
from tests.conftest import copy_cpu_work
from tests.test_safety import cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(sample_build, tmp_path_factory):
    from mv4all.safety import claim_folder

    folder = claim_folder(tmp_path_factory.mktemp("demo") / "mv4all-demo", "demo")  # as the demo claims it
    shutil.copytree(sample_build.corpus, folder / "music4all")  # the corpus step is skipped when present
    copy_cpu_work(sample_build.work, folder / "work")  # and the build reuses the measured frames/features
    return folder


def test_quick_demo_writes_every_file(demo_run, capsys):
    proc = cli(capsys, "demo", demo_run, "--quick", "--min-test", "4")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout + proc.stderr  # the command-line face reports on stderr
    for needle in ("Table 1", "learning targets", "one test song", "generated (", "reference (offline-built target)",
                   "leaderboard:", "timing", "stage 2 + Table 1", "total"):
        assert needle in out, needle

    # the dataset and the models
    from mv4all.data import load_split

    assert len(load_split(demo_run / "dataset", "mv_description", "test")) >= 4
    assert (demo_run / "demo-models" / "llm" / "config.json").is_file()
    assert (demo_run / "demo-models" / "llm" / "tokenizer.json").is_file()
    # stage 1 and the three stage-2 rows the demo table trains
    for run in ("stage1", "stage2-1+2+3+4", "stage2-2+3+4", "stage2-1+3"):
        record = json.loads((demo_run / "runs" / run / "run.json").read_text())
        assert record["global_step"] > 0, run
        assert (demo_run / "runs" / run / "generation_config.json").is_file(), run

    # Table 1 in every format, one row per YAML row, the baselines included
    board = demo_run / "leaderboard"
    report = json.loads((board / "leaderboard.json").read_text())
    names = {"stage1-zeroshot", "llm-text-only", "1+2+3+4", "2+3+4", "1+3", "1+2+3+4, no inputs", "1+3, no inputs"}
    rows = {r["name"]: r for r in report["results"]}
    assert names <= set(rows), sorted(rows)
    for name in names:
        assert 0.0 <= rows[name]["bleu_1"] <= 100.0
    csv_lines = (board / "leaderboard.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(names)
    assert (board / "leaderboard.md").read_text().count("\n|") >= len(names)
    assert (board / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"

    # every prediction file: one line per test clip, provenance and the truncation flag recorded
    test_ids = {r["id"] for r in load_split(demo_run / "dataset", "mv_description", "test")}
    files = sorted((board / "predictions").glob("*.jsonl"))
    assert len(files) == len(names)
    for path in files:
        preds = read_predictions(path)
        assert {p.id for p in preds} == test_ids, path.name
        assert all(isinstance(p.truncated, bool) for p in preds), path.name
        assert all(p.decoding.get("max_new_tokens") for p in preds), path.name
        for p in preds:
            MVDescription.parse(p.prediction)  # parses (leniently) whatever a quick model wrote


def test_demo_refuses_a_folder_it_does_not_own(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    proc = cli(capsys, "demo", tmp_path, "--quick")
    assert proc.returncode != 0
    assert (tmp_path / "notes.txt").read_text() == "mine"
