"""The wings import one way: each only from the layers below it, lazy imports inside functions included."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vaelab"

# lowest first; a wing may import from the layers before its own, never from its own layer's others or above
LAYERS = [
    {"errors", "files"},
    {"fast", "precision", "distributed", "threads", "data", "checkpoints", "pictures", "models"},
    {"objectives", "devices", "config"},
    {"annealing"},
    {"runs"},
    {"training", "evaluate"},
    {"api"},
    {"report", "explore"},
    {"arguments"},
    {"cli"},
    {"__init__", "__main__"},
]
RANK = {wing: rank for rank, wings in enumerate(LAYERS) for wing in wings}


def wing_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def imported_wings(path: Path) -> set[str]:
    """The vaelab wings a module imports, at its top or inside a function."""
    package = list(path.relative_to(PACKAGE).parts[:-1])
    wings = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = base + (node.module.split(".") if node.module else [])
            wings |= {target[0]} if target else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vaelab":
            parts = node.module.split(".")
            wings |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            wings |= {alias.name.split(".")[1] for alias in node.names
                      if alias.name.startswith("vaelab.") and alias.name.count(".") >= 1}
    return wings - {wing_of(path)}


def test_every_wing_has_a_layer():
    wings = {wing_of(path) for path in PACKAGE.rglob("*.py")}
    assert wings <= set(RANK), sorted(wings - set(RANK))


def test_no_import_runs_up_a_layer():
    upward = [f"{path.relative_to(PACKAGE.parent)} imports {wing}"
              for path in sorted(PACKAGE.rglob("*.py")) for wing in imported_wings(path)
              if RANK.get(wing, -1) >= RANK[wing_of(path)]]
    assert upward == []


def test_the_check_sees_imports_inside_functions():
    """The trainer imports the picture module only when it draws a grid: that import is seen too."""
    module = PACKAGE / "training" / "trainer.py"
    assert "report" not in imported_wings(module) and "pictures" in imported_wings(module)
