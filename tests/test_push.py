"""Publishing: one repo creation + one commit whose files equal the --dry-run listing."""

import json

from typer.testing import CliRunner

from mv4all.cli import app

TOKEN = "hf_secretTOKENvalue1234567890"


class FakeApi:
    calls: list = []

    def __init__(self, token=None, **kwargs):
        FakeApi.calls.append(("init", token is not None))

    def create_repo(self, repo_id, repo_type=None, private=False, exist_ok=False):
        FakeApi.calls.append(("create_repo", repo_id, repo_type, private))

    def create_commit(self, repo_id, repo_type=None, operations=(), commit_message=""):
        FakeApi.calls.append(("create_commit", repo_id, repo_type,
                              [(op.path_in_repo, op.path_or_fileobj) for op in operations]))


def test_push_dataset(sample_build, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    FakeApi.calls = []
    runner = CliRunner()
    dry = runner.invoke(app, ["push", "dataset", str(sample_build.out), "--repo-id", "me/mv", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    listed = [line for line in dry.stdout.splitlines() if line and not line.startswith(("would", " "))]
    # Written out by hand: the README's allowlist (card, parquet, failures, build info), one parquet
    # file per config and split of the sample build, in path order; never the marker or the lock.
    expected = ["README.md", "build_info.json",
                "data/music_caption/test-00000-of-00001.parquet", "data/music_caption/train-00000-of-00001.parquet",
                "data/mv_description/test-00000-of-00001.parquet", "data/mv_description/train-00000-of-00001.parquet",
                "failures.jsonl"]
    assert listed == expected
    assert (sample_build.out / ".mv4all.json").is_file()  # present in the folder, and not listed
    assert FakeApi.calls == []
    real = runner.invoke(app, ["push", "dataset", str(sample_build.out), "--repo-id", "me/mv", "--private"])
    assert real.exit_code == 0, real.output
    creates = [c for c in FakeApi.calls if c[0] == "create_repo"]
    commits = [c for c in FakeApi.calls if c[0] == "create_commit"]
    assert creates == [("create_repo", "me/mv", "dataset", True)] and len(commits) == 1
    sent = commits[0][3]
    assert [p for p, _ in sent] == listed
    assert "README.md" in listed and any(p.endswith(".parquet") for p in listed)
    assert not any(p.endswith((".mp3", ".mp4", ".txt", ".wav")) for p in listed)

    lyrics = [p.read_text(encoding="utf-8") for p in (sample_build.corpus / "lyrics").glob("*.txt")]
    lyric_lines = {ln.strip() for text in lyrics for ln in text.splitlines() if len(ln.split()) >= 5}
    for _, local in sent:
        import pathlib

        path = pathlib.Path(local)
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            text = json.dumps(pq.read_table(path).to_pylist(), ensure_ascii=False)
        else:
            text = path.read_text(encoding="utf-8")
        assert TOKEN not in text
        assert str(sample_build.out.parent) not in text and "/tmp/" not in text
        assert not any(line in text for line in lyric_lines)


def test_lyrics_understanding_never_quotes_more_than_8_words(sample_build):
    from builders.textcheck import longest_shared_run

    for split in sample_build.result.rows["mv_description"].values():
        for row in split:
            lyrics = (sample_build.corpus / "lyrics" / f"{row['id']}.txt").read_text(encoding="utf-8")
            assert longest_shared_run(row["lyrics_understanding"], lyrics) <= 8


def test_push_refuses_absolute_paths(tmp_path):
    from mv4all.data import check_publishable

    (tmp_path / "README.md").write_text("audio at /home/alice/music4all/audios/x.mp3\n")
    try:
        check_publishable(tmp_path, ["README.md"])
    except ValueError as exc:
        assert "absolute path" in str(exc) or "local path" in str(exc)
    else:
        raise AssertionError("an absolute path was accepted")
