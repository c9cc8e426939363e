"""The structure rules of docs/ARCHITECTURE.md, checked on the source (no imports are executed).

- layers: a module imports only modules of its own layer or below (``LAYERS``); ``clip2point`` never
  imports ``ui``;
- no import cycles between modules (imports inside functions count: they only defer the cycle);
- no private name crosses a module boundary (``from .x import _y`` or ``x._y`` on an imported module);
- no function over ``MAX_FUNCTION_LINES`` lines of code, no module over ``MAX_MODULE_LINES`` lines of
  code (docstrings, comments and blank lines not counted).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("clip2point", "ui")
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 500

# Bottom to top; the first matching prefix decides (longest prefixes first where they overlap).
LAYERS: list[tuple[str, int]] = [
    ("clip2point.errors", 0), ("clip2point.rng", 0), ("clip2point.classes", 0), ("clip2point.plots", 0),
    ("clip2point.prompts", 0),
    ("clip2point.checkpoints", 1), ("clip2point.torchscript", 1), ("clip2point.weights", 1),
    ("clip2point.sandbox", 1),
    ("clip2point.io", 2),
    ("clip2point.render", 3),
    ("clip2point.backbone", 4),
    ("clip2point.zeroshot", 5), ("clip2point.gdpa", 5), ("clip2point.datasets", 5), ("clip2point.viewcache", 5),
    ("clip2point.pretrain.cli", 7), ("clip2point.pretrain.__main__", 7),
    ("clip2point.evaluate", 6), ("clip2point.fewshot", 6), ("clip2point.pretrain", 6),
    ("clip2point.cli", 7), ("clip2point.cliutil", 7), ("clip2point.__main__", 7),
    ("clip2point", 0),  # the package itself: lazy, imports errors only
    ("ui", 8),
]


def layer_of(module: str) -> int:
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    raise AssertionError(f"{module} has no layer in LAYERS; add it (and to docs/ARCHITECTURE.md)")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> dict[str, Path]:
    files = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            files[module_name(path)] = path
    return files


FILES = source_files()
TREES = {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in FILES.items()}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_pkg = FILES[module].name == "__init__.py"
    base = module.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _known(name: str) -> str | None:
    """The module of ours that an import of ``name`` loads (``name`` may end in an attribute)."""
    while name:
        if name in FILES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names imported from it, line) for every import of ours in ``module``."""
    out = []
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name) and _known(alias.name):
                    out.append((_known(alias.name), [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            if not _ours(target):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in FILES:  # ``from . import figures`` imports a module
                    out.append((sub, [], node.lineno))
                elif _known(target):
                    out.append((_known(target), [alias.name], node.lineno))
    return out


def test_every_module_has_a_layer_and_imports_only_downwards() -> None:
    upward = []
    for module in FILES:
        mine = layer_of(module)
        for target, _names, line in imports(module):
            if target.split(".")[0] == "ui" and module.split(".")[0] == "clip2point":
                upward.append(f"{module}:{line} imports {target} (the core never imports the UI)")
            elif layer_of(target) > mine:
                upward.append(f"{module}:{line} (layer {mine}) imports {target} (layer {layer_of(target)})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    graph = {m: sorted({t for t, _n, _l in imports(m) if t != m}) for m in FILES}
    # A package's __init__ importing its own submodules is its front door; a submodule importing the
    # package back (``from clip2point.fewshot import X`` inside clip2point/fewshot/) closes a cycle.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for m in graph:
        if m not in state:
            visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_names_cross_modules() -> None:
    found = []
    for module in FILES:
        aliases: dict[str, str] = {}
        for node in ast.walk(TREES[module]):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if _ours(alias.name) and alias.name in FILES:
                        aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, node)
                if not _ours(target):
                    continue
                for alias in node.names:
                    if f"{target}.{alias.name}" in FILES:
                        aliases[alias.asname or alias.name] = f"{target}.{alias.name}"
                    elif _private(alias.name) and _known(target) != module:
                        found.append(f"{module}:{node.lineno} imports {target}.{alias.name}")
        for node in ast.walk(TREES[module]):
            if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and aliases[node.value.id] != module):
                found.append(f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not found, "private names used across modules:\n" + "\n".join(found)


def _code_lines(path: Path, tree: ast.AST, start: int, end: int) -> int:
    """Lines in [start, end] that are code: not blank, not a comment, not inside a docstring."""
    doc = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                doc.update(range(first.lineno, first.end_lineno + 1))
    lines = path.read_text(encoding="utf-8").splitlines()
    return sum(1 for i in range(start, end + 1)
               if i not in doc and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#"))


def test_functions_and_modules_stay_small() -> None:
    too_big = []
    for module, path in FILES.items():
        tree = TREES[module]
        n = _code_lines(path, tree, 1, len(path.read_text(encoding="utf-8").splitlines()))
        if n > MAX_MODULE_LINES:
            too_big.append(f"{path.relative_to(ROOT)}: {n} lines of code (max {MAX_MODULE_LINES})")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(path, tree, node.body[0].lineno, node.end_lineno)
                if n > MAX_FUNCTION_LINES:
                    too_big.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines of code "
                                   f"(max {MAX_FUNCTION_LINES})")
    assert not too_big, "split these by responsibility:\n" + "\n".join(too_big)


@pytest.mark.parametrize("module", sorted(m for m in FILES if FILES[m].name != "__main__.py"))
def test_module_has_a_docstring(module: str) -> None:
    assert ast.get_docstring(TREES[module]), f"{FILES[module].relative_to(ROOT)} needs a module docstring saying its one job"
