"""The example notebook: committed without outputs, and executed end to end on the CPU (its GPU section
skips itself) by a Jupyter kernel running this interpreter and this checkout's reftune."""
import os
import sys
from pathlib import Path

import nbformat
import pytest

import reftune

pytestmark = pytest.mark.costly(60)  # about this many seconds in all: costly files start first

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "reft_from_the_pieces.ipynb"
CELL_TIMEOUT_S = 300  # generous: the whole notebook is sized to run in a few minutes on 2 CPU cores


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_the_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    cells = code_cells(notebook)
    assert cells
    assert [i for i, cell in enumerate(cells) if cell.outputs or cell.execution_count is not None] == []


def text_of(cell) -> str:
    return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")


@pytest.mark.slow
def test_the_notebook_runs_on_cpu(tmp_path):
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # A probe cell of the test's own: which interpreter and which reftune the kernel ran.
    notebook.cells.append(nbformat.v4.new_code_cell("import sys, reftune\nprint(sys.executable)\nprint(reftune.__file__)"))
    # The kernel gets this checkout first on its path, so it imports the reftune under test even where
    # another one is installed; the kernel spec's "python" is started as sys.executable by jupyter_client.
    checkout = str(Path(reftune.__file__).resolve().parents[1])
    # No GPU for the kernel, even on a machine with one: the test is the CPU run (the GPU section skips).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [checkout, os.environ.get("PYTHONPATH")])),
           "CUDA_VISIBLE_DEVICES": ""}
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})  # runs/ lands in tmp_path
    client.execute(env=env)  # raises CellExecutionError on the first cell that fails

    executable, module = text_of(notebook.cells[-1]).split()
    assert Path(executable).resolve() == Path(sys.executable).resolve()
    assert Path(module).resolve() == Path(reftune.__file__).resolve()
    images = [output for cell in code_cells(notebook) for output in cell.outputs if "image/png" in output.get("data", {})]
    assert len(images) >= 6  # the clipping plot and the demo's plots of the two runs
    gpu_cells = [cell for cell in code_cells(notebook) if "on_gpu" in cell.source]
    assert len(gpu_cells) >= 4 and all("no cuda gpu" in text_of(cell).lower() for cell in gpu_cells)
    assert {path.name.split("-")[0] for path in (tmp_path / "runs").iterdir()} >= {"sft", "rl"}
