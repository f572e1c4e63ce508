"""The wings import one way: each only from the layers below it, lazy imports inside functions included.

The order is the package's own: the tree in `vaelab/__init__.py`'s docstring, lowest layer first,
which docs/architecture.md shows as it is.
"""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vaelab"
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
TREE_LINE = re.compile(r"^    (\w+)(/|\.py) ", re.M)  # "    models/     the model interface ..."


def layer_order() -> list[str]:
    """The wings as `vaelab/__init__.py` lists them, lowest first."""
    return [name for name, _ in TREE_LINE.findall(ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text())))]


# a wing may import from the wings listed before it; the entry points of `python -m vaelab` and `import vaelab` last
LAYERS = [{wing} for wing in layer_order()] + [{"__init__", "__main__"}]
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
    """The trainer imports the pictures wing only when it draws a grid: that import is seen too."""
    module = PACKAGE / "training" / "trainer.py"
    assert "report" not in imported_wings(module) and "pictures" in imported_wings(module)


def test_the_tree_is_the_package():
    """Every folder and module at the package root is in the tree, and nothing else is."""
    root = {path.stem for path in PACKAGE.glob("*.py")} | {path.name for path in PACKAGE.iterdir()
                                                           if (path / "__init__.py").is_file()}
    assert sorted(root - {"__init__", "__main__"}) == sorted(layer_order())


def test_the_architecture_page_shows_the_same_tree():
    page = ARCHITECTURE.read_text()
    shown = [name for name, _ in TREE_LINE.findall(page.split("```text", 1)[1].split("```", 1)[0])]
    assert [name for name in shown if name in layer_order()] == layer_order()
