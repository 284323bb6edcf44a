"""What every ``mv4all`` command shares: the typer app (and its ``push`` group), the stderr
console, and the one-line failure that ends a command (never a traceback)."""

from __future__ import annotations

from pathlib import Path

import rich.markup
import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Music-to-music-video description generation.")
push_app = typer.Typer(no_args_is_help=True, help="Publish a dataset (or model) to the Hugging Face Hub.")
app.add_typer(push_app, name="push")
console = Console(stderr=True)


def check_writable(path: Path, option: str) -> None:
    """Fail now (one line) if ``path`` could not be written later, after the expensive work."""
    import tempfile

    if path.is_dir():
        fail(f"{option} {path} is a folder: give a file path", 2)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=path.parent, prefix=".mv4all-probe-").close()
    except OSError as exc:
        fail(f"{option} {path}: cannot write there ({exc.strerror or exc})", 2)


def fail(message: str, code: int = 1) -> None:
    """One line on stderr (never wrapped: paths in it stay whole), then exit with ``code``."""
    console.print(f"[bold red]error:[/] {rich.markup.escape(message)}", soft_wrap=True)
    raise typer.Exit(code)
