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


# ---------------------------------------------------------------------------------------------
# import circles and first imports


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict:
    """Every module of the project packages by dotted name -> its path."""
    return {module_name(path): path for _, path in _modules()}


def load_time_imports(name: str, source: str, known) -> set:
    """The project modules ``name`` imports when it is imported: its module-level ``import``
    and ``from ... import`` statements (also under ``if``/``try``, not inside functions or
    classes, which run later), with ``from package import module`` resolved to the module
    and every parent package of an imported module included (importing ``a.b`` runs ``a``)
    but the module's own parents (they are always imported before it, whoever imports it)."""
    package = name if known[name].name == "__init__.py" else name.rpartition(".")[0]
    targets = set()

    def visit(statements):
        for node in statements:
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit(getattr(node, field, []) or [])
            elif isinstance(node, ast.ExceptHandler):
                visit(node.body)

    visit(ast.parse(source).body)
    closed = set()
    for target in targets:
        parts = target.split(".")
        closed.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    own_parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {t for t in closed if t in known and t != name and t not in own_parents}


def import_cycles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan's algorithm): each
    is an import circle. Sorted, each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(out)


def test_the_cycle_finder_finds_a_circle_and_only_a_circle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set(), "c": {"b"}}) == []


def test_a_module_and_its_own_package_are_no_circle_but_a_module_importing_back_is():
    known = {"p": Path("p/__init__.py"), "p.m": Path("p/m.py")}
    graph = {"p": load_time_imports("p", "from p import m\n", known),
             "p.m": load_time_imports("p.m", "from p import helper\n", known)}
    assert graph == {"p": {"p.m"}, "p.m": set()}  # a module's own package is loaded before it anyway
    known["q"] = Path("q.py")
    graph["q"] = load_time_imports("q", "import p.m\n", known)
    graph["p.m"] = load_time_imports("p.m", "from q import helper\n", known)
    assert import_cycles(graph) == [["p", "p.m", "q"]]


def test_no_module_of_the_project_is_in_an_import_circle():
    known = project_modules()
    graph = {name: load_time_imports(name, path.read_text(), known) for name, path in known.items()}
    assert import_cycles(graph) == []


# Each module imported first in a process of its own (no module of the project imported
# before it). The processes are forked from one that has imported the third-party libraries
# only: a fresh interpreter per module would pay torch's import ~150 times (minutes); what a
# first import tests is the order in which the project's own modules load, which the fork
# leaves untouched.
_FIRST_IMPORTS = r"""
import importlib, os, sys, traceback
import numpy, pandas, pyarrow, pyarrow.parquet, yaml, torch, torchvision, scipy, ray, ray.tune
failures = []
running = {}  # pid -> (module, the read end of its pipe)
# As many children at once as there are cores: each only imports, and the result is the same.
parallel = max(1, min(4, len(os.sched_getaffinity(0))))


def finish_one():
    pid, status = os.wait()
    if pid not in running:  # not a child of this loop
        return
    name, read = running.pop(pid)
    message = b""  # a child writes at most 500 bytes: the pipe never fills, so it is read after the wait
    while chunk := os.read(read, 4096):
        message += chunk
    os.close(read)
    if status != 0:
        failures.append(f"{name}: {message.decode(errors='replace')}")


for name in sys.argv[1:]:
    while len(running) >= parallel:
        finish_one()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            code = 0
        except BaseException:
            os.write(write, traceback.format_exc().splitlines()[-1].encode()[:500])
            code = 1
        os._exit(code)
    os.close(write)
    running[pid] = (name, read)
while running:
    finish_one()
print("\n".join(sorted(failures)))
sys.exit(1 if failures else 0)
"""


def test_every_module_imports_first_in_a_process_of_its_own():
    import subprocess
    import sys

    names = sorted(project_modules())
    done = subprocess.run([sys.executable, "-c", _FIRST_IMPORTS, *names], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
