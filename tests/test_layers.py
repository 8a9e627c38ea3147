"""The packages import one way (docs/architecture.md): a test that reads every module's
imports from its syntax tree (not by importing it) and fails on any arrow against the
direction, including imports inside functions."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("trainers", "measures", "analysis", "sweep")
# Which project packages and which third-party roots each package may import.
ALLOWED = {
    # trainers also uses scikit-learn (the offline digits) and torchvision (downloads), lazily.
    "trainers": {"project": {"trainers"}, "forbidden": {"ray", "pandas", "pyarrow", "scipy", "matplotlib"}},
    "measures": {"project": {"trainers", "measures"}, "forbidden": {"ray", "pandas", "pyarrow", "matplotlib"}},
    "analysis": {"project": {"analysis"}, "forbidden": {"ray", "torch", "torchvision"}},
    "sweep": {"project": {"sweep", "trainers", "measures", "analysis"}, "forbidden": set()},
}


def imported_roots(source: str) -> set:
    """The top-level names of every module an ``import`` or ``from ... import`` names."""
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def violations(package: str, source: str) -> list:
    rules = ALLOWED[package]
    roots = imported_roots(source)
    bad = [r for r in roots if r in PROJECT and r not in rules["project"]]
    bad += [r for r in roots if r in rules["forbidden"]]
    return sorted(bad)


def _modules():
    for package in PROJECT:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path


@pytest.mark.parametrize("package, path", list(_modules()), ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else v)
def test_every_module_imports_only_in_the_allowed_direction(package, path):
    assert violations(package, path.read_text()) == [], f"{path.relative_to(ROOT)} imports against the layers"


@pytest.mark.parametrize("package, line, culprit", [
    ("measures", "from sweep.store import Store", "sweep"),
    ("measures", "def f():\n    import ray\n", "ray"),
    ("trainers", "import measures.common", "measures"),
    ("analysis", "from torch import nn", "torch"),
    ("analysis", "import sweep.driver", "sweep"),
    ("trainers", "import pandas as pd", "pandas"),
])
def test_a_forbidden_import_is_caught(package, line, culprit):
    assert violations(package, "import numpy\n" + line) == [culprit]


def test_allowed_imports_pass():
    assert violations("sweep", "import ray\nfrom measures import registry\nfrom analysis import report") == []
    assert violations("measures", "import torch\nfrom trainers import data") == []
