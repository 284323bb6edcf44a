"""``mv4all shots``: a whole-song MV script as a shot list for a text-to-video model (``mv4all.shots``), with an
optional LLM rewrite of each prompt for the target (``builders.llm.shot_prompts``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mv4all.cli.common import app, check_writable, console, fail


@app.command("shots")
def shots_cmd(
    script: Optional[Path] = typer.Argument(
        None, help="A whole-song MV script JSON (mv4all describe --whole-song)."),
    target: Optional[str] = typer.Option(
        None, "--target", "-t", help="The text-to-video model family (see --list-targets), e.g. cogvideox."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The shot list to write: .jsonl or .csv."),
    targets_file: Optional[Path] = typer.Option(
        None, "--targets", help="A YAML of targets of the same shape as mv4all/shot_targets.yaml [that file]."),
    list_targets: bool = typer.Option(False, "--list-targets", help="Print the targets and their sources; exit."),
    llm: Optional[str] = typer.Option(
        None, "--llm", help="Also rewrite each prompt for the target with an LLM: 'openai' (any OpenAI-compatible "
                            "server; OPENAI_API_KEY; paid, cached). Off by default."),
    model: str = typer.Option("gpt-4o-mini", "--model", help="With --llm: the LLM."),
    base_url: Optional[str] = typer.Option(
        None, "--base-url", help="With --llm: an OpenAI-compatible server [$OPENAI_BASE_URL, else api.openai.com]."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="With --llm: print the requests, tokens and cost it would take; send and write "
                                 "nothing."),
    cache_dir: Optional[Path] = typer.Option(
        None, "--cache-dir", help="With --llm: the LLM answer cache [~/.cache/mv4all/llm, shared with builds]."),
    max_reasks: int = typer.Option(2, "--max-reasks", min=0, help="With --llm: re-asks of an invalid answer."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="With --llm: requests in flight."),
) -> None:
    """Plan one text-to-video prompt per clip: times on bar lines, each clip at most the target's length, each
    prompt a shared style prefix + the shot's text within the target's prompt budget."""
    from mv4all import shots as sh

    if list_targets:
        try:
            targets = sh.load_targets(targets_file)
        except sh.TargetsError as exc:
            fail(str(exc), 2)
        console.print(targets_table(targets))
        console.print(f"sources and notes: {targets_file or sh.TARGETS_FILE}", soft_wrap=True, markup=False,
                      highlight=False)
        return
    if script is None or target is None or out is None:
        fail("give a script JSON, --target NAME and -o OUT (.jsonl or .csv); --list-targets shows the targets", 2)
    if llm is not None and llm != "openai":
        fail(f"--llm {llm}: the rewrite backend must be 'openai' (any OpenAI-compatible server)", 2)
    if llm is None and (dry_run or base_url):
        fail("--dry-run and --base-url go with --llm openai", 2)
    try:
        sh.output_format(out)
    except ValueError as exc:
        fail(str(exc), 2)
    if out.exists() and script.exists() and out.resolve() == script.resolve():
        fail(f"-o {out} is the script itself: choose another path", 2)
    if not dry_run:
        check_writable(out, "-o")
    try:
        spec = sh.get_target(target, targets_file)
        song = sh.load_script(script)
        plan = sh.plan_shots(song, spec)
    except (sh.TargetsError, sh.ScriptError) as exc:
        fail(str(exc), 2)

    rows = plan.rows
    if llm is not None:
        from builders.llm.shot_prompts import rewrite_plan

        with console.status(f"rewriting {len(rows)} prompts with {model} ..."):
            try:
                rows, report = rewrite_plan(plan, song, model=model, base_url=base_url, cache_dir=cache_dir,
                                            dry_run=dry_run, concurrency=concurrency, max_reasks=max_reasks)
            except (RuntimeError, ValueError) as exc:
                fail(f"--llm: {exc}", 2)
        for line in report.lines():
            console.print(line, soft_wrap=True, markup=False, highlight=False)
        if dry_run:
            return
    sh.write_rows(rows, out)
    console.print(summary(plan, rows), soft_wrap=True, markup=False, highlight=False)
    console.print(f"wrote {out}", soft_wrap=True, markup=False, highlight=False)


GRID = {"downbeats": "cut on the downbeats", "tempo": "cut on bar lines from the tempo",
        "none": "no bar lines (no downbeats or tempo)"}


def summary(plan, rows) -> str:
    t, c = plan.target, plan.counter
    longest = max(r.duration for r in rows)
    used = max(c.used(r.prompt) for r in rows)
    noted = sum(bool(r.note) for r in rows)
    trimmed = sum("trimmed" in r.note for r in rows)
    return (f"{len(rows)} shots for {t.name} ({t.clip_seconds:g} s clips at {t.fps:g} fps): {rows[0].start:.2f}-"
            f"{rows[-1].end:.2f} s, {GRID[plan.grid]}, longest {longest:.2f} s; "
            f"prompts up to {used}/{t.prompt_budget.amount} {t.prompt_budget.unit} ({c.method}), {trimmed} trimmed; "
            f"{noted} rows with a note. Style prefix: {plan.prefix or '(none)'}")


def targets_table(targets):
    from rich.table import Table

    from mv4all.shots import counter_for

    table = Table(title="text-to-video targets (model defaults: edit the YAML or pass --targets)")
    for col in ("name", "model", "clip (s)", "fps", "frames", "prompt budget", "counted"):
        table.add_column(col, overflow="fold")
    for t in targets.values():
        b = t.prompt_budget
        table.add_row(t.name, t.model, f"{t.clip_seconds:g}", f"{t.fps:g}", str(t.frames or ""),
                      f"{b.describe()}: {b.encoder}" if b.encoder else b.describe(), counter_for(t).method)
    return table
