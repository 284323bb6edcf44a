"""`mv4all evaluate` beyond n-gram overlap: the second table (structure, music faithfulness against the
clips' measured features) and the optional LLM judge, on a real offline build."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from eval.judge import CRITERIA, JudgeVerdict
from mv4all.cli import app
from mv4all.data import load_split
from tests.fake_openai import FakeOpenAI

KEY = "sk-evaluate-judge-7f3a-DO-NOT-LEAK"


def _predictions(path, rows, text):
    path.write_text("".join(json.dumps({"id": r["id"], "prediction": text(r)}) + "\n" for r in rows))
    return path


def test_second_table_and_judge(sample_build, tmp_path, monkeypatch):
    rows = list(load_split(sample_build.out, "mv_description", "test"))
    refs = _predictions(tmp_path / "references.jsonl", rows, lambda r: r["mv_description_text"])
    other = {r["id"]: rows[(i + 1) % len(rows)]["mv_description_text"] for i, r in enumerate(rows)}
    shifted = _predictions(tmp_path / "shifted.jsonl", rows, lambda r: other[r["id"]])
    cut = _predictions(tmp_path / "cut.jsonl", rows, lambda r: r["mv_description_text"][:300])
    out = tmp_path / "report.json"
    res = CliRunner().invoke(app, ["evaluate", "-p", str(refs), "-p", str(shifted), "-p", str(cut),
                                   "--dataset", str(sample_build.out), "--no-bertscore", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "Beyond n-gram overlap" in res.output and res.output.index("BLEU-1") < res.output.index("Beyond")
    report = {row["name"]: row for row in json.loads(out.read_text())["results"]}
    own, moved, short = (report[n]["quality"] for n in ("references", "shifted", "cut"))
    # The offline targets are written from the measured features: their claims are right.
    assert own["faithfulness"]["score"] == 1.0 and own["structure"]["parse_rate"] == 1.0
    assert own["structure"]["mean_frames"] == 15 and own["structure"]["truncation_rate"] == 0
    # Another clip's description makes claims the clip contradicts: lower faithfulness, same structure.
    assert moved["faithfulness"]["score"] < 0.8 and moved["structure"] == own["structure"]
    assert short["structure"]["truncation_rate"] == 1.0 and short["structure"]["mean_frames"] < 15
    # Without the dataset there are no facts: structure only, and a note says why.
    res = CliRunner().invoke(app, ["evaluate", "-p", str(refs), "--no-bertscore"])
    assert res.exit_code == 2  # lines without references still need --dataset for BLEU
    with_refs = _predictions(tmp_path / "own.jsonl", rows, lambda r: r["mv_description_text"])
    lines = [json.loads(line) | {"reference": "x"} for line in with_refs.read_text().splitlines()]
    with_refs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    res = CliRunner().invoke(app, ["evaluate", "-p", str(with_refs), "--no-bertscore"])
    assert res.exit_code == 0 and "pass --dataset" in res.output

    # The judge needs --dataset and a known backend, and is never run unless asked.
    res = CliRunner().invoke(app, ["evaluate", "-p", str(with_refs), "--no-bertscore", "--judge", "openai"])
    assert res.exit_code == 2 and "--dataset" in res.output
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the judge's cache lives under ~/.cache
    with FakeOpenAI(KEY, lifetime=60) as server:
        server.register(JudgeVerdict, lambda text, body: {k: {"score": 4, "reason": "Fits."} for k in CRITERIA})
        args = ["evaluate", "-p", str(refs), "--dataset", str(sample_build.out), "--no-bertscore",
                "--judge", "openai", "--judge-base-url", server.url, "--out", str(out)]
        res = CliRunner().invoke(app, [*args[:-2], "--judge-dry-run"])
        assert res.exit_code == 0, res.output
        assert server.count("POST", "/v1/chat/completions") == 0
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        assert server.count("POST", "/v1/chat/completions") == len(rows)
        judged = json.loads(out.read_text())["results"][0]["judge"]
        assert judged["n_judged"] == len(rows) and judged["means"]["musical_fit"] == 4.0
        assert KEY not in out.read_text() and KEY not in res.output
