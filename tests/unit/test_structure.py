"""The package's shape: layers without import cycles, small modules, short parameter lists.

Read from the source with the standard library's ``ast``; function-level and ``TYPE_CHECKING``
imports count like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "nf_dist"
MAX_MODULE_LINES = 400
MAX_PARAMETERS = 8


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every module of the package ``path`` imports, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            candidates = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found |= {c for c in candidates if c in known}
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (a package importing its own children excepted)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if target.startswith(node + ".") or node.startswith(target + "."):
                continue  # a package and its own submodules
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_inside_the_package() -> None:
    modules = _modules()
    graph = {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"


def test_lower_layers_never_import_a_pipeline_or_the_command_line() -> None:
    modules = _modules()
    upper = ("nf_dist.pipelines", "nf_dist.cli")
    for name, path in modules.items():
        if name.startswith(upper):
            continue
        offenders = [m for m in _imports(path, set(modules)) if m.startswith(upper)]
        assert not offenders, f"{name} imports {offenders}: only pipelines and the CLI may"


def test_the_command_line_imports_only_pipelines() -> None:
    modules = _modules()
    allowed = ("nf_dist.pipelines", "nf_dist.cli", "nf_dist.config", "nf_dist.errors")
    allowed_files = ("nf_dist.storage.artifacts",)  # the run record the CLI writes
    for name, path in modules.items():
        if name.startswith("nf_dist.cli"):
            imported = _imports(path, set(modules)) - {"nf_dist"}  # the root: its version
            stray = [m for m in imported if not m.startswith(allowed + allowed_files)]
            assert not stray, f"{name} imports {stray}"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_modules_stay_small_outside_the_model_zoo(name: str) -> None:
    if name.startswith("nf_dist.models"):
        pytest.skip("architectures and GAN training may be long")
    lines = len(_modules()[name].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines; split it by concern"


def test_no_function_takes_more_than_eight_parameters() -> None:
    too_many = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
                names = [a.arg for a in params if a.arg not in ("self", "cls")]
                if len(names) > MAX_PARAMETERS:
                    too_many.append(f"{name}.{node.name} ({len(names)})")
    assert not too_many, f"configs should carry the rest: {too_many}"
