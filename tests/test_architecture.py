"""The layout is the architecture (docs/architecture.md): each folder is a layer, and a module
imports only from its own layer or the layers below it, with no import cycles.

    cli/        Typer commands, argument parsing, output          (may import everything below)
    engine/     phases, up/down/verify orchestration, settings
    adapters/   hosts (local, Lima, SSH), kubectl, helm, Loki's HTTP API, files
    core/       pure logic: manifest, policy, render, detection rules, sizing
    shipper/    the collector bundle: imports nothing of kaudit but itself

Every import counts, also those inside functions (kaudit imports heavy modules lazily to keep
start-up fast). A module over MAX_LINES lines must say why in a `# size:` comment.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "kaudit"
LAYERS = {"cli": 4, "engine": 3, "adapters": 2, "core": 1, "shipper": 0}
MAX_LINES = 450


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package itself (its __version__) belongs to no layer
    if parts[1] in ("__main__", "launch"):  # entry points: `python -m kaudit`, the console script
        return 5
    return LAYERS.get(parts[1])


def resolve(name: str) -> str | None:
    """The kaudit module an imported name lives in (a module, or the package of a name)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    pkg = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for n in names:
            if n == "kaudit" or n.startswith("kaudit."):
                target = resolve(n)
                if target and target != module:
                    out.add(target)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_is_in_a_layer():
    loose = [m for m in MODULES if m not in ("kaudit", "kaudit.__main__", "kaudit.launch") and layer(m) is None]
    assert loose == [], f"modules outside the layer folders: {loose}"


def test_no_module_imports_a_higher_layer():
    upward = []
    for m, targets in GRAPH.items():
        lm = layer(m)
        for t in sorted(targets):
            lt = layer(t)
            if lm is None or lt is None:
                continue
            if lm == 0 and lt != 0:
                upward.append(f"{m} -> {t} (the shipper bundle must stay self-contained)")
            elif lt > lm:
                upward.append(f"{m} -> {t}")
    assert upward == []


def test_no_import_cycles():
    # Tarjan's strongly connected components over the whole import graph
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            # a package importing its own submodule (re-exports) is not a loop of design
            if len(comp) > 1 and not all(c.startswith(min(comp, key=len) + ".") or c == min(comp, key=len) for c in comp):
                cycles.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert cycles == []


def test_big_modules_say_why():
    silent = []
    for m, p in MODULES.items():
        text = p.read_text(encoding="utf-8")
        if text.count("\n") > MAX_LINES and "# size:" not in text:
            silent.append(f"{p.relative_to(ROOT.parent)} ({text.count(chr(10))} lines)")
    assert silent == []


@pytest.mark.parametrize("bad,expected", [
    ({"kaudit.core.x": {"kaudit.engine.y"}}, "kaudit.core.x -> kaudit.engine.y"),
    ({"kaudit.shipper.x": {"kaudit.core.y"}}, "kaudit.shipper.x -> kaudit.core.y (the shipper bundle must stay self-contained)"),
])
def test_the_layer_check_itself_catches_an_upward_import(bad, expected, monkeypatch):
    monkeypatch.setattr(__import__(__name__), "GRAPH", bad)
    with pytest.raises(AssertionError) as e:
        test_no_module_imports_a_higher_layer()
    assert expected in str(e.value)


def test_the_cycle_check_itself_catches_a_loop(monkeypatch):
    monkeypatch.setattr(__import__(__name__), "GRAPH", {"kaudit.engine.a": {"kaudit.engine.b"}, "kaudit.engine.b": {"kaudit.engine.a"}})
    with pytest.raises(AssertionError, match="kaudit.engine.a"):
        test_no_import_cycles()


def test_only_the_cli_sees_typer():
    # the engine takes settings objects the CLI built; it never reads options itself
    seen = []
    for m, p in MODULES.items():
        if layer(m) in (0, 1, 2, 3):
            tree = ast.parse(p.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                if any(n == "typer" or n.startswith("typer.") or n == "click" for n in names):
                    seen.append(m)
    assert seen == []
