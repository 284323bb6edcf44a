"""Imports flow one way: builders/train/eval use mv4all; mv4all uses none of them
(except the composition root mv4all/cli.py, inside its command functions)."""

import ast
from pathlib import Path

import mv4all

FORBIDDEN = {"builders", "train", "eval"}
ROOT = Path(mv4all.__file__).parent


def _imports(node):
    if isinstance(node, ast.Import):
        return [a.name.split(".")[0] for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module.split(".")[0]]
    return []


def test_mv4all_never_imports_builders_train_eval():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        is_cli = path.relative_to(ROOT).as_posix() == "cli.py"
        for node in ast.walk(tree):
            bad = FORBIDDEN.intersection(_imports(node))
            if not bad:
                continue
            if is_cli and _inside_function(tree, node):
                continue
            offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {sorted(bad)}")
    assert not offenders, offenders


def _inside_function(tree, target):
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if any(n is target for n in ast.walk(fn)):
                return True
    return False
