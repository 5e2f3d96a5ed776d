"""The package's imports: they run one way, and configs load without torch, timm or Ray.

The import graph is read from the source (AST), not by importing, so it covers every module,
including the ones a test run never imports. An edge ``a -> b`` means module ``a`` imports
module ``b`` of the package; the implicit import of ``b``'s parent packages is left out (a
package's ``__init__`` re-exporting its submodules would otherwise always close a loop), and
so are imports under ``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import dimsearch

PACKAGE_DIR = Path(dimsearch.__file__).resolve().parent
REPO = PACKAGE_DIR.parent
HEAVY = ("torch", "timm", "ray")


def _modules(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(body: list[ast.stmt], inside_functions: bool) -> Iterator[ast.stmt]:
    """The import statements that run: at module level (in ``if``/``try``/``with`` blocks
    too), and also inside functions and classes when ``inside_functions``."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_nodes(node.orelse, inside_functions)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if inside_functions or isinstance(node, ast.ClassDef):
                yield from _import_nodes(node.body, inside_functions)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(node, field, None) or []:
                    if isinstance(child, ast.stmt):
                        yield from _import_nodes([child], inside_functions)
                    elif hasattr(child, "body"):  # except handlers, match cases
                        yield from _import_nodes(child.body, inside_functions)


def _targets(module: str, is_package: bool, node: ast.stmt, known: dict[str, Path]) -> set[str]:
    """The package's modules an import statement imports (``from a import b``: ``a.b`` if that
    is a module, else ``a``)."""
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    else:
        assert isinstance(node, ast.ImportFrom)
        base = node.module or ""
        if node.level:  # relative: from the package this module is in
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        names = set()
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            names.add(sub if sub in known else base)
    return {name for name in names if name in known and name != module}


def import_graph(
    package_dir: Path = PACKAGE_DIR, inside_functions: bool = False
) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    known = _modules(package_dir)
    graph = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[module] = set()
        for node in _import_nodes(tree.body, inside_functions):
            graph[module] |= _targets(module, is_package, node, known)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None when the graph has none (depth-first search)."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str] | None:
        path.append(module)
        on_path.add(module)
        for dep in sorted(graph[module]):
            if dep in on_path:
                return [*path[path.index(dep) :], dep]
            if dep not in done and (cycle := visit(dep)):
                return cycle
        path.pop()
        on_path.discard(module)
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done and (cycle := visit(module)):
            return cycle
    return None


def test_the_graph_sees_the_imports_it_should(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from pkg.sub import leaf\n",
        "sub/__init__.py": "",
        "sub/leaf.py": "import os\nfrom . import other\n",
        "sub/other.py": (
            "from ..sub.leaf import name\ntry:\n    import pkg.late\nexcept ImportError:\n    pass\n"
        ),
        "late.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.typed\n"
            "def f():\n    from pkg import lazy\n"
        ),
        "typed.py": "",
        "lazy.py": "",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    assert import_graph(pkg) == {
        "pkg": {"pkg.sub.leaf"},  # from a import b: the module a.b
        "pkg.sub": set(),
        "pkg.sub.leaf": {"pkg.sub.other"},  # relative, and nothing outside the package
        "pkg.sub.other": {"pkg.sub.leaf", "pkg.late"},  # from a.b import name: a.b; in try
        "pkg.late": set(),  # TYPE_CHECKING never runs; the function's import is lazy
        "pkg.typed": set(),
        "pkg.lazy": set(),
    }
    assert import_graph(pkg, inside_functions=True)["pkg.late"] == {"pkg.lazy"}
    assert find_cycle(import_graph(pkg)) == ["pkg.sub.leaf", "pkg.sub.other", "pkg.sub.leaf"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_module_level_imports_form_no_cycle() -> None:
    """A cycle makes the result depend on which module is imported first (a half-initialised
    module answers `ImportError` or a missing attribute) and hides the layering."""
    cycle = find_cycle(import_graph())
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle or [])


def test_imports_inside_functions_close_no_cycle_either() -> None:
    """A lazy import is for speed, not a way around the layering: e.g. `load_data` dispatches
    to the loaders, which import `ProxyData`, so `ProxyData` must not live with `load_data`."""
    cycle = find_cycle(import_graph(inside_functions=True))
    assert cycle is None, "import cycle (counting imports in functions): " + " -> ".join(
        cycle or []
    )


# A fresh interpreter: this one has torch already (conftest imports it).
_LIGHT_SCRIPT = """
import json, sys
from pathlib import Path
heavy = lambda: sorted(name for name in {heavy!r} if name in sys.modules)
import dimsearch, dimsearch.data, dimsearch.search, dimsearch.train
from dimsearch.data import KINDS, DataConfig
from dimsearch.train import AMP_MODES, AUGMENTS, TrainConfig
after_import = heavy()
from dimsearch.search import load_space
spaces = sorted(Path("spaces").glob("*.yaml"))
for path in spaces:
    load_space(path)
print(json.dumps({{"import": after_import, "load": heavy(), "spaces": [p.name for p in spaces]}}))
"""


@pytest.fixture(scope="module")
def light_run() -> dict[str, list[str]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", _LIGHT_SCRIPT.format(heavy=HEAVY)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_importing_the_packages_loads_no_heavy_library(light_run: dict[str, list[str]]) -> None:
    assert light_run["import"] == [], (
        f"importing dimsearch, .data, .search, .train and their configs imported "
        f"{light_run['import']}; see `python -X importtime -c 'import dimsearch.train'`"
    )


def test_loading_every_space_loads_no_heavy_library(light_run: dict[str, list[str]]) -> None:
    assert len(light_run["spaces"]) >= 3, light_run["spaces"]
    assert light_run["load"] == [], (
        f"load_space on {light_run['spaces']} imported {light_run['load']}: validating a space "
        "file needs configs only"
    )


@pytest.mark.parametrize("package", ["dimsearch", "dimsearch.data", "dimsearch.train"])
def test_every_public_name_resolves(package: str) -> None:
    """The lazy re-exports keep the public API: every name in ``__all__`` is there."""
    module = __import__(package, fromlist=["__all__"])
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
        assert name in dir(module), f"{package}.{name}"


@pytest.mark.parametrize("package", ["dimsearch.data", "dimsearch.train"])
def test_no_lazy_name_is_also_a_submodule(package: str) -> None:
    """Importing ``package.name`` sets the package's attribute ``name`` to that module, which
    then hides a lazily exported ``name`` (`__getattr__` is never asked)."""
    homes = importlib.import_module(package)._HOMES
    clashes = [name for name in homes if importlib.util.find_spec(f"{package}.{name}")]
    assert clashes == [], f"{package}: lazy names that are also submodules: {clashes}"
