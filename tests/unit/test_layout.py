"""The blueprint's layout rules, checked on the source: import rules, no import cycles (function-level
imports count: they hide a cycle, they do not remove it), no module reaching into another object's
private state."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIERS = {"edge", "streaming", "origin"}
PACKAGES = TIERS | {"shared", "model_export", "deploy", "loadtest"}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for pkg in sorted(PACKAGES):
        for py in (ROOT / pkg).rglob("*.py"):
            name = ".".join(py.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            out[name] = ast.parse(py.read_text(encoding="utf-8"))
    return out


MODULES = _modules()


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_import_rules() -> None:
    broken = []
    for mod, tree in MODULES.items():
        top = mod.split(".")[0]
        for name in _imports(tree):
            root = name.split(".")[0]
            if top == "shared" and root in PACKAGES - {"shared"}:
                broken.append(f"{mod}: shared imports {name}")
            elif top in TIERS and root in TIERS - {top}:
                broken.append(f"{mod}: a tier imports another tier ({name})")
            elif top in TIERS | {"shared"} and root in {"torch", "model_export"}:
                broken.append(f"{mod}: serving code imports {name}")
            elif top == "model_export" and root in TIERS | {"deploy", "loadtest"}:
                broken.append(f"{mod}: model_export imports {name}")
    assert not broken, "\n".join(sorted(set(broken)))


def test_no_import_cycles() -> None:
    deps = {mod: {n for n in _imports(tree) if n in MODULES} for mod, tree in MODULES.items()}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for d in deps.get(todo.pop(), ()):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    reachable = {m: reach(m) for m in deps}
    cycles = sorted({tuple(sorted((a, b))) for a in deps for b in reachable[a] if a != b and a in reachable[b]})
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("pkg", ["edge", "shared", "model_export"])
def test_no_reaching_into_private_state(pkg: str) -> None:
    found = []
    for mod, tree in MODULES.items():
        if mod.split(".")[0] != pkg:
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{mod}:{node.lineno}: .{node.attr}")
    assert not found, "\n".join(found)
