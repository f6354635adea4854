"""The package's modules import one way: no module reaches itself again through its imports
(lazy imports inside functions included), so each floor can be read and tested on its own."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "estatelens"


def _import_graph() -> dict[str, set[str]]:
    mods = {}
    for f in SRC.rglob("*.py"):
        name = "estatelens." + ".".join(f.relative_to(SRC).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = f
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                t = f"{target}.{alias.name}" if f"{target}.{alias.name}" in mods else target
                # the package root only gives __version__ (and Tagger lazily, to users)
                if t in mods and t not in (m, "estatelens"):
                    edges[m].add(t)
    return edges


def test_no_import_cycles():
    edges = _import_graph()

    def path(a: str, b: str) -> list[str] | None:
        stack, seen = [(a, [a])], {a}
        while stack:
            x, trail = stack.pop()
            for y in edges[x]:
                if y == b:
                    return trail + [y]
                if y not in seen:
                    seen.add(y)
                    stack.append((y, trail + [y]))
        return None

    cycles = [path(b, a) for a in edges for b in edges[a] if path(b, a)]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])
