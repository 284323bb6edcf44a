"""Imports flow one way: builders/, train/, eval/ use mv4all; mv4all uses none of them.

The one exception is the command-line face, the ``mv4all/cli/`` package, which composes the others (as the
design says). Every import counts, lazy ones inside functions too, and no module anywhere loads
another by file path: recipes are packages imported as ordinary modules.
"""

import ast
from pathlib import Path

import mv4all

FORBIDDEN = {"builders", "train", "eval"}
ROOT = Path(mv4all.__file__).parent
REPO = ROOT.parent
COMMAND_LINE_FACE = "cli/"  # every module of the mv4all/cli/ package, and nothing else


def _imports(node):
    if isinstance(node, ast.Import):
        return [a.name.split(".")[0] for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module.split(".")[0]]
    return []


def test_mv4all_never_imports_builders_train_eval():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.relative_to(ROOT).as_posix().startswith(COMMAND_LINE_FACE):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            bad = FORBIDDEN.intersection(_imports(node))
            if bad:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {sorted(bad)}")
    assert not offenders, offenders


def test_nothing_loads_code_by_file_path():
    offenders = []
    for folder in ("mv4all", "builders", "train", "eval", "bench", "tests"):
        for path in sorted((REPO / folder).rglob("*.py")):
            text = path.read_text()
            for needle in ("spec_from_file_location", "SourceFileLoader", "runpy.run_path"):
                if needle in text and path.name != "test_layout.py":
                    offenders.append(f"{path.relative_to(REPO)} uses {needle}")
    assert not offenders, offenders


def test_recipes_are_packages_with_parser_and_main():
    from eval import leaderboard
    from train import make_tiny, sft

    for module in (sft, make_tiny, leaderboard):
        parser = module.make_parser()
        assert parser.prog and callable(module.main)
    args = sft.make_parser().parse_args(["--config", "x.yaml", "--stage", "1"])
    assert args.stage == 1 and args.config == Path("x.yaml")
