"""The tutorials in docs/tutorials/ run top to bottom as a user runs them: each notebook is executed by
Jupyter's own client and kernel (nbclient, ipykernel) in a folder of its own, with its parameters
cell made smaller (fewer images, epochs and draws) so that the suite stays short; every other cell
is the page's, as the site shows it.
"""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .progress import HANG_GUARD

TUTORIALS = Path(__file__).resolve().parents[1] / "docs" / "tutorials"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_notebook(name: str, folder: Path, **smaller) -> nbformat.NotebookNode:
    """Execute docs/tutorials/NAME in `folder` with the parameters cell's values replaced by `smaller`
    (each name must be one the cell sets); the executed notebook (CellExecutionError on a failing cell)."""
    notebook = nbformat.read(TUTORIALS / name, as_version=4)
    parameters = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1, "a tutorial has one parameters cell"
    assigned = {target.id for node in ast.parse(parameters[0].source).body if isinstance(node, ast.Assign)
                for target in node.targets}
    assert set(smaller) <= assigned, sorted(set(smaller) - assigned)
    parameters[0].source += "\n" + "\n".join(f"{key} = {value!r}" for key, value in smaller.items())
    NotebookClient(notebook, timeout=HANG_GUARD, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
                     for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", []))


@pytest.mark.slow
def test_your_own_networks_tutorial_runs_top_to_bottom(tmp_path):
    notebook = run_notebook("your-own-networks.ipynb", tmp_path, IMAGES=600, EPOCHS=2, IW_SAMPLES=20, AIS_STEPS=5,
                            AIS_IMAGES=4, PORT=_free_port())
    shown = outputs(notebook)
    assert "(600, 3, 32, 32) uint8" in shown and "test ELBO" in shown and "AIS" in shown
    assert (tmp_path / "runs" / "colour-shapes" / "report.html").is_file()
    assert (tmp_path / "runs" / "colour-shapes" / "data.npz").is_file()
    assert "http://127.0.0.1:" in shown


@pytest.mark.slow
def test_the_family_tutorial_runs_top_to_bottom_from_the_command_line(tmp_path, monkeypatch, mnist_raw):
    import sys

    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{__import__('os').environ['PATH']}")  # `vaelab`
    notebook = run_notebook("a-family-with-its-own-setting.ipynb", tmp_path, EPOCHS=1, LIMIT_TRAIN=1000,
                            IW_SAMPLES=2)
    shown = outputs(notebook)
    assert "--prior-std PRIOR_STD" in shown
    assert "vaelab: error: --prior-std -1.0 is not allowed" in shown
    assert "vaelab: error: --prior-std scales the standard prior" in shown
    assert "--model scaled-prior is not registered in this process: import scaled_prior first" in shown
    assert "'prior_std': 0.5" in shown and "False False" in shown and "N(0, 0.5² I_d)" in shown
    assert "test ELBO" in shown
