"""Which package may import which: the folders show the architecture, and imports point one way.

collector -> storage -> detectors (run by flows) -> alerts -> remediation; dashboards read storage.
The foundation (``forewarn.config``, ``forewarn.storage`` and the small CLI helpers) imports none of
the components; components import the foundation and what is upstream of them in this table; the
composition roots (the CLI, ``forewarn up``, the demo and the test bed) may import anything.
docs/architecture.md explains the table.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ("collector", "detectors", "flows", "alerts", "dashboards")
FOUNDATION = "foundation"
ROOTS = "roots"
# a module of the forewarn/ folder -> its layer (everything else in forewarn/ is foundation)
FOREWARN_ROOTS = {"cli", "up", "up_cli", "testbed"}
# what each layer may import besides itself
ALLOWED = {
    FOUNDATION: {FOUNDATION},
    "collector": {FOUNDATION},
    "detectors": {FOUNDATION},
    "alerts": {FOUNDATION},  # remediation lives in alerts/remediation/
    "flows": {FOUNDATION, "detectors", "alerts"},
    "dashboards": {FOUNDATION, "flows", "detectors", "alerts"},
    ROOTS: {FOUNDATION, ROOTS, *COMPONENTS},
}
# modules of a component that compose the whole product: the demo starts every part, and the
# sample-data writer sends its telemetry through the collector's conversion as OTLP requests would
COMPONENT_ROOTS = {"dashboards/demo.py", "dashboards/workload.py"}


def layer_of_file(rel: Path) -> str | None:
    top = rel.parts[0]
    if str(rel) in COMPONENT_ROOTS:
        return ROOTS
    if top in COMPONENTS:
        return top
    if top == "forewarn":
        name = rel.parts[1].removesuffix(".py")
        return ROOTS if name in FOREWARN_ROOTS else FOUNDATION
    return None


def layer_of_module(module: str) -> str | None:
    bits = module.split(".")
    if bits[0] != "forewarn":
        return None
    if len(bits) == 1:
        return FOUNDATION  # ``from forewarn import cliutil``: checked by its names below
    if bits[1] in COMPONENTS:
        return bits[1]
    return ROOTS if bits[1] in FOREWARN_ROOTS else FOUNDATION


def imports(path: Path) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "forewarn":
                out += [(f"forewarn.{a.name}", node.lineno) for a in node.names]
            else:
                out.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
    return out


def violations(files: list[tuple[Path, Path]]) -> list[str]:
    """``file:line: layer imports module (layer)`` for every import against ``ALLOWED``; ``files``
    are (path to read, path relative to the repository root)."""
    wrong = []
    for path, rel in files:
        layer = layer_of_file(rel)
        if layer is None:
            continue
        for module, line in imports(path):
            target = layer_of_module(module)
            if target is not None and target != layer and target not in ALLOWED[layer]:
                wrong.append(f"{rel}:{line}: {layer} imports {module} ({target})")
    return wrong


def test_imports_point_one_way() -> None:
    files = [
        (p, p.relative_to(ROOT))
        for p in sorted(ROOT.glob("*/**/*.py"))
        if ".venv" not in p.parts and p.relative_to(ROOT).parts[0] in ("forewarn", *COMPONENTS)
    ]
    assert len(files) > 50
    wrong = violations(files)
    assert not wrong, "imports against the architecture:\n" + "\n".join(wrong)


def test_the_rule_catches_a_wrong_import(tmp_path) -> None:
    """The checker itself: a detector importing the flows, or the storage importing the collector."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from forewarn.flows.engine import ScoreEngine\n")
    b.write_text("import numpy\nfrom forewarn.collector import convert\n")
    assert violations([(a, Path("detectors/probe.py")), (b, Path("forewarn/storage/probe.py"))]) == [
        "detectors/probe.py:1: detectors imports forewarn.flows.engine (flows)",
        "forewarn/storage/probe.py:2: foundation imports forewarn.collector (collector)",
    ]
