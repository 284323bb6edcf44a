"""A user's folders, secrets and runs are safe, and every mistake is one clear line.

Each test reproduces a case a new user ran into (see the reliability issue), with their own
folders and files next to mv4all's, and checks that nothing of theirs changes, nothing is
written outside the roots, and the answer names the file or option without a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mv4all.cli import app
from mv4all.safety import MARKER, UnsafeOutput, check_id, claim_folder, folder_lock, inside
from tests.conftest import TINY_YAML, StopAfter, copy_corpus, copy_cpu_work
from train import sft

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes (mv4all's lock file aside: it names the last process that held it)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".mv4all.lock"}


def mv4all(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """The command as a user runs it (a fresh process: what reaches the terminal is what is checked)."""
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", **(env or {}))
    full_env.pop("MV4ALL_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "mv4all.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=600)


def in_process(capsys, main, *args, env=None) -> subprocess.CompletedProcess:
    """A command's ``main`` in this process (no interpreter start-up): exit code and what it printed."""
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in (env or {}).items():
            patch.setenv(key, value)
        patch.delenv("MV4ALL_DEBUG", raising=False)
        patch.setattr(sys, "argv", ["mv4all", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def cli(capsys, *args, env=None) -> subprocess.CompletedProcess:
    """``mv4all ARGS`` through the command's own entry point, in this process."""
    from mv4all.cli import main

    return in_process(capsys, main, *args, env=env)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0, proc.stdout[-500:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr[-1000:])


# --------------------------------------------------------------------------- the guards themselves


def test_ids_and_joins_stay_inside(tmp_path):
    for bad in ("../../../../ESC", "a/b", "..", "", "/etc/passwd", "x\\y", "a..b"):
        with pytest.raises(ValueError):
            check_id(bad)
    assert check_id("0009fFIM1eYThaPg") == "0009fFIM1eYThaPg"
    with pytest.raises(ValueError, match="leaves"):
        inside(tmp_path, "frames", "../../escape")
    (tmp_path / "link").symlink_to("/")
    with pytest.raises(ValueError, match="leaves"):
        inside(tmp_path, "link", "etc")
    assert inside(tmp_path, "a", "b.json") == (tmp_path / "a" / "b.json").resolve()


def test_claim_folder_rules(tmp_path):
    mine = claim_folder(tmp_path / "new", "dataset")
    assert json.loads((mine / MARKER).read_text())["kind"] == "dataset"
    claim_folder(mine, "dataset")  # ours: fine again
    with pytest.raises(UnsafeOutput, match="holds an mv4all dataset, not a run"):
        claim_folder(mine, "run")
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(UnsafeOutput, match="--overwrite"):
        claim_folder(user, "dataset")
    claim_folder(user, "dataset", overwrite=True)
    assert (user / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(UnsafeOutput, match="is a file"):
        claim_folder(tmp_path / "file", "dataset")
    with folder_lock(mine, "first"):
        with pytest.raises(UnsafeOutput, match="in use by first"):
            with folder_lock(mine, "second"):
                pass


# --------------------------------------------------------------------------- build


@pytest.fixture()
def corpus(mini_corpus, tmp_path) -> Path:
    return copy_corpus(mini_corpus, tmp_path / "music4all")


def _build(corpus: Path, out: Path, *extra, seed_work=None):
    if seed_work is not None:
        copy_cpu_work(seed_work, Path(str(out) + ".work"))
    return mv4all("build", "--music4all", corpus, "--out", out, "-q", *extra)


def test_build_refuses_a_users_folder_and_keeps_it(corpus, mini_build, tmp_path):
    out = tmp_path / "mine"
    (out / "data" / "music4all").mkdir(parents=True)
    (out / "data" / "music4all" / "keep.csv").write_text("precious\n")
    (out / "README.md").write_text("my notes\n")
    before = snapshot(out)
    proc = _build(corpus, out, seed_work=mini_build.work)
    one_line_error(proc, str(out), "--overwrite")
    assert snapshot(out) == before
    proc = _build(corpus, out, "--overwrite", seed_work=mini_build.work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "data" / "music4all" / "keep.csv").read_text() == "precious\n"  # never deleted
    from datasets import load_dataset

    assert len(load_dataset(str(out), "music_caption", split="train")) > 0


def test_build_out_overlapping_the_corpus_is_refused(corpus):
    for out in (corpus, corpus / "out"):
        proc = _build(corpus, out)
        one_line_error(proc, "overlaps the Music4All folder")
    assert not (corpus / "out").exists()


def test_build_into_a_file_or_unwritable_place_fails_before_work(corpus, tmp_path):
    as_file = tmp_path / "a-file"
    as_file.write_text("x")
    one_line_error(_build(corpus, as_file), "is a file")
    # Unwritable whatever the user (CI runs as root, for whom permission bits do not stop writes).
    proc = _build(corpus, as_file / "out", "--work-dir", tmp_path / "w")
    one_line_error(proc, "cannot write")
    assert not (tmp_path / "w").exists()  # refused before any stage ran


def test_bad_split_options_fail_before_work(corpus, tmp_path):
    out = tmp_path / "o"
    one_line_error(_build(corpus, out, "--test-ratio", "1.5"), "test_ratio")
    one_line_error(_build(corpus, out, "--test-size", "-3"), "test_size")
    assert not out.exists() and not Path(str(out) + ".work").exists()


def _csv_with_bad_id(corpus: Path, only_bad: bool = False) -> None:
    for name in ("id_information.csv", "id_metadata.csv"):
        path = corpus / name
        lines = path.read_text(encoding="utf-8").splitlines()
        bad = lines[1].split("\t")
        bad[0] = "../../../../ESC"
        lines = lines[:1] + ([] if only_bad else lines[1:]) + ["\t".join(bad)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_dotdot_id_is_a_failure_record_and_nothing_leaves_the_roots(corpus, mini_build, tmp_path):
    _csv_with_bad_id(corpus)
    escape = tmp_path.parent  # where ../../ would land from the work dir's stage folders
    before = sorted(p.name for p in escape.iterdir())
    out = tmp_path / "ds"
    proc = _build(corpus, out, seed_work=mini_build.work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    bad = [f for f in failures if f["id"] == "../../../../ESC"]
    assert bad and bad[0]["stage"] == "ingest" and "safe file name" in bad[0]["reason"]
    assert sorted(p.name for p in escape.iterdir()) == before
    assert not list(Path("/").glob("ESC*")) and not list(tmp_path.glob("**/ESC*"))


def test_a_build_with_no_rows_keeps_the_previous_dataset(corpus, mini_build, tmp_path):
    out = tmp_path / "ds"
    assert _build(corpus, out, seed_work=mini_build.work).returncode == 0
    before = snapshot(out)
    _csv_with_bad_id(corpus, only_bad=True)
    proc = _build(corpus, out)
    one_line_error(proc, "no clip produced a dataset row", "left as it was")
    assert snapshot(out) == before
    from datasets import load_dataset

    assert len(load_dataset(str(out), "music_caption", split="train")) > 0


def test_a_second_build_into_the_same_out_is_refused(corpus, mini_build, tmp_path):
    out = tmp_path / "ds"
    assert _build(corpus, out, seed_work=mini_build.work).returncode == 0
    with folder_lock(out, "mv4all build (test holder)"):
        proc = _build(corpus, out)
    one_line_error(proc, "in use by mv4all build (test holder)")


def test_csv_with_a_utf8_bom_is_read(corpus):
    from builders.music4all import read_music4all

    for name in ("id_information.csv", "id_metadata.csv"):
        path = corpus / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    tracks = read_music4all(corpus).tracks
    assert len(tracks) == 4


# --------------------------------------------------------------------------- runs, describe, evaluate


def test_train_refuses_a_users_output_dir(tiny_runs, tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    (out / "README.md").write_text("my project\n")
    (out / "config.yaml").write_text("mine: true\n")
    before = snapshot(out)
    with pytest.raises(UnsafeOutput, match="--overwrite"):
        sft.train(TINY_YAML, 1, tiny_runs.common(output_dir=str(out), max_steps=1))
    assert snapshot(out) == before


def test_resume_skips_an_incomplete_checkpoint_and_records_the_whole_run(tiny_runs):
    kw = dict(max_steps=6, save_steps=3, logging_steps=1)
    full = sft.train(TINY_YAML, 1, tiny_runs.common(output_dir=str(tiny_runs.root / "r-full"), **kw))
    part = tiny_runs.root / "r-part"
    sft.train(TINY_YAML, 1, tiny_runs.common(output_dir=str(part), **kw), callbacks=[StopAfter(3)])
    (part / "checkpoints" / "checkpoint-5").mkdir()  # killed while saving: an empty folder
    sft.train(TINY_YAML, 1, tiny_runs.common(output_dir=str(part), resume=True, **kw))
    a, b = (json.loads((run / "run.json").read_text()) for run in (full, part))
    assert b["global_step"] == 6
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)  # the whole run, not the resumed steps
    steps = [json.loads(line)["step"] for line in (part / "logs" / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in line]
    assert steps == [1, 2, 3, 4, 5, 6]


def _prediction_lines(tiny_runs, n=2):
    from mv4all.describe import load_split

    return [json.dumps({"id": r["id"], "prediction": "a dancer in red light"})
            for r in load_split(tiny_runs.build.out, "test")[:n]]


def test_evaluate_never_overwrites_its_input_and_checks_coverage(tiny_runs, tmp_path, capsys):
    from mv4all.describe import load_split

    test_rows = load_split(tiny_runs.build.out, "test")
    preds = tmp_path / "preds.jsonl"
    preds.write_text("\n".join(_prediction_lines(tiny_runs, len(test_rows))) + "\n")
    before = preds.read_bytes()
    common = ["evaluate", "-p", preds, "--no-bertscore"]
    one_line_error(cli(capsys, *common, "-o", preds), "--out", "one of the predictions files")
    assert preds.read_bytes() == before
    partial = tmp_path / "partial.jsonl"
    partial.write_text(_prediction_lines(tiny_runs, 1)[0] + "\n")
    one_line_error(cli(capsys, "evaluate", "-p", partial, "--no-bertscore", "--dataset", tiny_runs.build.out),
                   f"1 of the {len(test_rows)} ids", "--allow-partial")
    ok = cli(capsys, "evaluate", "-p", partial, "--no-bertscore", "--dataset", tiny_runs.build.out, "--allow-partial")
    assert ok.returncode == 0, ok.stderr
    # A line's own reference does not beat the dataset's.
    foreign = tmp_path / "foreign.jsonl"
    row = json.loads(_prediction_lines(tiny_runs, 1)[0])
    foreign.write_text(json.dumps({**row, "reference": row["prediction"]}) + "\n")
    report = tmp_path / "r.json"
    assert cli(capsys, "evaluate", "-p", foreign, "--no-bertscore", "--dataset", tiny_runs.build.out, "--allow-partial",
                  "-o", report).returncode == 0
    assert json.loads(report.read_text())["results"][0]["rouge_l_f1"] < 50


def test_describe_output_is_never_repaired_or_mixed(tiny_runs, tmp_path, capsys):
    def batch(out: Path, tokens: int, limit: int):
        return cli(capsys, "describe", "--model", tiny_runs.stage2, "--dataset", tiny_runs.build.out, "--audio-root",
                   tiny_runs.build.corpus, "--max-new-tokens", tokens, "--limit", limit, "--device", "cpu", "-o", out)

    notes = tmp_path / "notes.jsonl"
    notes.write_text("my notes about the runs\n{\"id\": \"x\"}\n")
    before = notes.read_bytes()
    one_line_error(batch(notes, 4, 2), str(notes), "not an mv4all prediction")
    assert notes.read_bytes() == before
    preds = tmp_path / "p.jsonl"
    assert batch(preds, 4, 2).returncode == 0
    first = preds.read_bytes()
    one_line_error(batch(preds, 5, 3), "another decoding")
    assert preds.read_bytes() == first
    assert batch(preds, 4, 3).returncode == 0  # same settings: resumes, keeps the first two lines
    assert preds.read_bytes().startswith(first) and len(preds.read_text().splitlines()) == 3


CRASHES = {
    "corrupt run.json": "run.json",
    "corrupt generation_config.json": "generation_config.json",
    "truncated adapter": "stage2",
    "missing --model folder": "run folder not found",
}


@pytest.mark.parametrize("case", sorted(CRASHES))
def test_describe_failures_are_one_line(case, tiny_runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_runs.stage2, run, ignore=shutil.ignore_patterns("checkpoints"))
    if case == "corrupt run.json":
        (run / "run.json").write_text('{"stage": 2, "inputs"')
    elif case == "corrupt generation_config.json":
        (run / "generation_config.json").write_text("{not json")
    elif case == "truncated adapter":
        path = run / "stage2" / "adapter_model.safetensors"
        path.write_bytes(path.read_bytes()[:200])
    else:
        run = tmp_path / "no-such-run"
    wav = sorted(tiny_runs.build.corpus.glob("audios/*"))[0]
    proc = cli(capsys, "describe", wav, "--model", run, "--max-new-tokens", "4", "--device", "cpu",
                  "--base-model", tiny_runs.tiny["llm"], "--audio-encoder", tiny_runs.tiny["audio_encoder"])
    one_line_error(proc, CRASHES[case])


def test_other_mistakes_are_one_line(tiny_runs, tmp_path, capsys):
    bad_utf8 = tmp_path / "latin1.jsonl"
    bad_utf8.write_bytes(b'{"id": "x", "prediction": "caf\xe9"}\n')
    one_line_error(cli(capsys, "evaluate", "-p", bad_utf8, "--no-bertscore"), "not UTF-8")
    preds = tmp_path / "p.jsonl"
    preds.write_text(_prediction_lines(tiny_runs, 1)[0] + "\n")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    one_line_error(cli(capsys, "evaluate", "-p", preds, "--no-bertscore", "-o", blocker / "r.json"),
                   "--out", "cannot write")
    cache = tmp_path / "emb-file"
    cache.write_text("x")
    one_line_error(cli(capsys, "embed", "--dataset", tiny_runs.build.out, "--audio-root", tiny_runs.build.corpus,
                          "--encoder", tiny_runs.tiny["audio_encoder"], "--out", cache), "is a file")
    recipe = ["--config", str(TINY_YAML), "--output-dir", str(tmp_path / "never-written")]
    for args, needle in (
        (["--stage", "1", "--dataset", str(tmp_path / "nope")], "--dataset"),
        (["--stage", "2", "--init-from", "", "--dataset", str(tiny_runs.build.out)], "--init-from"),
        (["--stage", "2", "--init-from", str(tmp_path), "--dataset", str(tiny_runs.build.out)], "--init-from"),
        (["--stage", "2", "--inputs", "5+6", "--dataset", str(tiny_runs.build.out)], "5+6"),
    ):
        proc = in_process(capsys, lambda: sft.main(sft.make_parser().parse_args(sys.argv[1:])), *recipe, *args)
        one_line_error(proc, needle)
        assert not (tmp_path / "never-written").exists()


def test_describe_warns_about_inputs_it_ignores(tiny_runs):
    wav = sorted(tiny_runs.build.corpus.glob("audios/*"))[0]
    result = runner.invoke(app, ["describe", str(wav), "--model", str(tiny_runs.stage2), "--inputs", "1",
                                 "--genre", "pop", "--mv-type", "Animation", "--max-new-tokens", "3",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "--genre is ignored" in result.output and "--mv-type is ignored" in result.output


# --------------------------------------------------------------------------- leaderboard


def test_leaderboard_refuses_unknown_keys_and_reports_missing_inputs(tiny_runs, tmp_path, capsys):
    import yaml

    from eval import leaderboard as L

    base = {"dataset": str(tiny_runs.build.out), "audio_root": str(tiny_runs.build.corpus),
            "out_dir": str(tmp_path / "lb"), "bertscore": {}, "rows": []}
    cases = [
        ({**base, "rows": [{"name": "s", "group": "sanity", "run_dir": str(tiny_runs.stage2), "eval_input": "none"}]},
         "did you mean 'eval_inputs'"),
        ({**base, "decodng": {"max_new_tokens": 4}, "rows": [{"name": "a", "group": "main",
                                                              "run_dir": str(tiny_runs.stage2)}]},
         "did you mean 'decoding'"),
        ({**base, "rows": [{"name": "a", "group": "main", "predictions": str(tmp_path / "none.jsonl")}]},
         "not found"),
        ({**base, "rows": [{"name": "a", "group": "main", "run_dir": str(tmp_path)}]}, "run.json"),
        ({**base, "dataset": str(tmp_path / "no-dataset"), "rows": [{"name": "a", "group": "main",
                                                                     "run_dir": str(tiny_runs.stage2)}]},
         "dataset folder not found"),
        ({**base, "out_dir": str(tmp_path / "blocker" / "lb"), "rows": [{"name": "a", "group": "main",
                                                                         "run_dir": str(tiny_runs.stage2)}]},
         "cannot write"),
    ]
    (tmp_path / "blocker").write_text("a file where the output folder would go")
    for i, (cfg, needle) in enumerate(cases):
        path = tmp_path / f"lb{i}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        proc = in_process(capsys, lambda: L.main(L.make_parser().parse_args(sys.argv[1:])), "--config", path)
        one_line_error(proc, needle)


# --------------------------------------------------------------------------- publishing


def test_push_model_publishes_only_the_run_and_no_secret(tiny_runs, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(tiny_runs.stage2, run)
    (run / ".env").write_text("OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz012345\n")
    (run / "wandb").mkdir()
    (run / "wandb" / "settings.json").write_text('{"api_key": "x"}')
    home = tmp_path / "hf-home"
    home.mkdir()
    (home / "token").write_text("hf_" + "a" * 34)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(home / "token"))
    result = runner.invoke(app, ["push", "model", str(run), "--repo-id", "me/x", "--dry-run"])
    assert result.exit_code == 0, result.output
    listed = [line.strip() for line in result.output.splitlines()]
    assert ".env" not in listed and "wandb/settings.json" not in listed and "run.json" in listed
    assert ".env" in result.output and "wandb/" in result.output  # named as not uploaded
    # a run file holding a key, or the saved login token, is refused by name
    (run / "stage2" / "notes.txt").write_text("key sk-proj-abcdefghijklmnopqrstuvwxyz012345\n")
    result = runner.invoke(app, ["push", "model", str(run), "--repo-id", "me/x", "--dry-run"])
    assert result.exit_code == 2 and "stage2/notes.txt" in result.output and "sk-proj" not in result.output
    (run / "stage2" / "notes.txt").write_text("token " + "hf_" + "a" * 34 + "\n")
    result = runner.invoke(app, ["push", "model", str(run), "--repo-id", "me/x", "--dry-run"])
    assert result.exit_code == 2 and "stage2/notes.txt" in result.output


def test_atomic_writes_get_the_mode_a_plain_write_would(tmp_path):
    """mkstemp's 0600 must not leak into cards, records and pages; a file's own mode survives a rewrite."""
    from mv4all.safety import atomic_write_text

    old = os.umask(0o022)
    try:
        new = atomic_write_text(tmp_path / "card.md", "hello\n")
        assert new.stat().st_mode & 0o777 == 0o644
        private = tmp_path / "notes.txt"
        private.write_text("x")
        private.chmod(0o600)
        atomic_write_text(private, "y")
        assert private.stat().st_mode & 0o777 == 0o600 and private.read_text() == "y"
        os.umask(0o077)
        assert atomic_write_text(tmp_path / "other.md", "z").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
    assert not list(tmp_path.glob(".*.tmp"))
