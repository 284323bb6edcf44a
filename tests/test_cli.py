from pathlib import Path

import yaml
from typer.testing import CliRunner

from builders.config import BuildConfig, load_config
from mv4all.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_loads():
    cfg = load_config(ROOT / "configs" / "build.yaml", music4all=Path("m"), out=Path("o"), workers=3,
                      **{"split.by": "artist", "split.test_size": None})
    assert isinstance(cfg, BuildConfig) and cfg.workers == 3 and cfg.split.by == "artist"
    assert cfg.work == Path("o.work") and cfg.videos_dir == Path("m") / "videos"
    assert yaml.safe_load((ROOT / "configs" / "build.yaml").read_text())["frames"]["every"] == 2.0


def test_build_rejects_bad_options(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["build", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "music4all" in res.output
    res = runner.invoke(app, ["build", "--music4all", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                              "--test-size", "3", "--test-ratio", "0.5"])
    assert res.exit_code == 2 and "either" in res.output
    res = runner.invoke(app, ["build", "--music4all", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not found" in res.output
    base = ["build", "--music4all", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]
    for extra, message in ((["--engine", "spark"], "'local' or 'ray'"),
                           (["--ray-address", "auto"], "needs --engine ray")):
        res = runner.invoke(app, base + extra, terminal_width=400)
        assert res.exit_code == 2 and message in res.output, res.output
    res = runner.invoke(app, ["build", "--music4all", str(tmp_path), "--out", "s3://bucket/ds"], terminal_width=400)
    assert res.exit_code == 2 and "give --work-dir" in res.output, res.output


def test_help_lists_commands():
    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("sample", "build", "push", "demo"):
        assert cmd in res.output


def test_build_with_a_missing_videos_folder_fails_clearly(mini_corpus, tmp_path):
    missing = tmp_path / "no-such-videos"
    res = CliRunner().invoke(app, ["build", "--music4all", str(mini_corpus), "--videos", str(missing),
                                   "--out", str(tmp_path / "out"), "--quiet"], terminal_width=400)
    assert res.exit_code == 2, res.output
    assert f"videos folder not found: {missing}" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out" / "README.md").exists() and not (tmp_path / "out" / "data").exists()
    assert not (tmp_path / "out.work" / "stages").exists()  # failed before any work
