"""``mv4all push dataset`` and ``mv4all push model``: upload a built dataset folder or a training run
to the Hugging Face Hub in one commit, sending only the files they consist of."""

from __future__ import annotations

from pathlib import Path

import typer

from mv4all.cli.common import console, fail, push_app

# the options both uploads take (typer copies an option's settings into each command)
_PRIVATE = typer.Option(False, "--private", help="Create the repo private.")
_DRY_RUN = typer.Option(False, "--dry-run", help="Check and list what would be uploaded; send nothing.")


@push_app.command("dataset")
def push_dataset(
    folder: Path = typer.Argument(..., help="A built dataset folder."),
    repo_id: str = typer.Option(..., "--repo-id", help="Hub dataset repo, e.g. you/mv4all-sample."),
    private: bool = _PRIVATE,
    dry_run: bool = _DRY_RUN,
) -> None:
    """Upload a dataset folder (card, parquet, failures, build info) in one commit. Token from HF_TOKEN."""
    if not (folder / "README.md").is_file():
        fail(f"{folder} is not a built dataset folder (no README.md)", 2)
    _upload(folder, repo_id, "dataset", private, dry_run)


@push_app.command("model")
def push_model(
    run_dir: Path = typer.Argument(..., help="A training run directory (train/sft.py output)."),
    repo_id: str = typer.Option(..., "--repo-id", help="Hub model repo, e.g. you/mv4all-stage2."),
    private: bool = _PRIVATE,
    dry_run: bool = _DRY_RUN,
) -> None:
    """Upload a run (card, run.json, config, generation config, weights, tokenizer, logs) in one commit.

    Only the files a run consists of are sent; checkpoints and anything else in the folder stay local.
    """
    if not (run_dir / "run.json").is_file() or not (run_dir / "README.md").is_file():
        fail(f"{run_dir} is not a finished training run (no run.json / README.md)", 2)
    from mv4all.model.run import run_files

    files, others = run_files(run_dir)
    skipped = sorted({rel.split("/")[0] + ("/" if "/" in rel else "") for rel in others})
    if skipped:
        console.print(f"not part of the run, not uploaded: {', '.join(skipped)}", markup=False, soft_wrap=True)
    _upload(run_dir, repo_id, "model", private, dry_run, files=files, commit_message="Upload mv4all model")


def _upload(folder: Path, repo_id: str, repo_type: str, private: bool, dry_run: bool, **options) -> None:
    """One commit to the Hub (with ``dry_run``: nothing sent), then the files it holds, one per line on stdout."""
    from mv4all.data import push_folder

    try:
        files = push_folder(folder, repo_id, repo_type=repo_type, private=private, dry_run=dry_run, **options)
    except ValueError as exc:
        fail(str(exc), 2)
    verb = "would upload" if dry_run else "uploaded"
    console.print(f"{verb} {len(files)} files to {repo_type} repo {repo_id}{' (private)' if private else ''}:")
    for rel in files:
        print(rel)
