"""The scripts import lazily (after setting env for Ray), so a renamed or moved name would
only show when someone runs them: check every `from actors|serve|prompts... import` in them."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parent.parent / "scripts").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_project_import_in_a_script_resolves(script):
    tree = ast.parse(script.read_text())
    checked = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in (
                "actors", "serve", "prompts"):
            mod = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(mod, alias.name) or importlib.util.find_spec(
                    f"{node.module}.{alias.name}"), f"{script.name}: {node.module}.{alias.name}"
                checked += 1
    assert checked or script.name.startswith("bench_")  # the scripts that drive the product
