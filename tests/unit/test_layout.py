"""The blueprint's layout rules, checked on the source: import rules, no import cycles between modules or
between packages (function-level imports count: they hide a cycle, they do not remove it), every project
import through the installed ``strata.`` namespace, no module reaching into another object's private state."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIERS = {"edge", "streaming", "origin"}
PACKAGES = TIERS | {"shared", "model_export", "deploy", "loadtest"}


def _modules() -> dict[str, ast.Module]:
    """Module name without the ``strata.`` namespace (``edge.app``) -> its syntax tree."""
    out = {}
    for pkg in sorted(PACKAGES):
        for py in (ROOT / pkg).rglob("*.py"):
            name = ".".join(py.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            out[name] = ast.parse(py.read_text(encoding="utf-8"))
    return out


MODULES = _modules()


def _raw_imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _imports(tree: ast.Module) -> set[str]:
    """Imported names with the ``strata.`` namespace taken off (so they compare with MODULES' names)."""
    return {n.removeprefix("strata.") for n in _raw_imports(tree)}


def test_every_project_import_goes_through_the_strata_namespace() -> None:
    """``import shared`` would load a second copy of a module (and collide with any other ``shared``)."""
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")] + list((ROOT / "tests").rglob("*.py"))
    bare = [f"{py.relative_to(ROOT)}: {name}" for py in files
            for name in _raw_imports(ast.parse(py.read_text(encoding="utf-8")))
            if name.split(".")[0] in PACKAGES]
    assert not bare, "\n".join(sorted(bare))


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


def test_no_cycles_between_packages() -> None:
    """``deploy`` sits on top; nothing below it imports it (``loadtest`` gets launchers handed in)."""
    deps: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for mod, tree in MODULES.items():
        top = mod.split(".")[0]
        deps[top] |= {n.split(".")[0] for n in _imports(tree)} & (PACKAGES - {top})

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for d in deps[todo.pop()]:
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    cycles = sorted({tuple(sorted((a, b))) for a in deps for b in reach(a) if a != b and a in reach(b)})
    assert not cycles, f"package cycles: {cycles}"
    assert not any("deploy" in deps[p] for p in PACKAGES - {"deploy"}), deps


NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}     # public, underscored to avoid field names
# A library's private API where it has no public one, each with its reason at the call site.
LIBRARY_PRIVATE = {("streaming.log_identity", "_get_conn"),        # aiokafka: the broker's API versions
                   ("shared.serving.logs", "_srcfile")}            # logging: no caller lookup (the HOWTO's way)


@pytest.mark.parametrize("pkg", ["edge", "shared", "model_export", "streaming", "origin"])
def test_no_reaching_into_private_state(pkg: str) -> None:
    found = []
    for mod, tree in MODULES.items():
        if mod.split(".")[0] != pkg:
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and node.attr not in NAMEDTUPLE_API and (mod, node.attr) not in LIBRARY_PRIVATE
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{mod}:{node.lineno}: .{node.attr}")
    assert not found, "\n".join(found)
