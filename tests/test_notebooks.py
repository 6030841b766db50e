"""Every notebooks/*.ipynb: committed without outputs, reads ORTHOSCOPE_SMOKE in its first code cell, and runs top to
bottom without error in smoke mode (cwd = notebooks/, a deadline of NOTEBOOK_BUDGET_S for the whole notebook),
on this interpreter's ``python3`` kernel."""
import sys
import time
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
NOTEBOOK_BUDGET_S = 360
PREFIX_MARK = "orthoscope-kernel-prefix:"


def _read(path):
    import nbformat

    return nbformat.read(path, as_version=4)


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    nb = _read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs or execution counts; clear them before committing"
    assert code and 'os.environ.get("ORTHOSCOPE_SMOKE") == "1"' in code[0].source, \
        f"{path.name}: the first code cell must read SMOKE = os.environ.get(\"ORTHOSCOPE_SMOKE\") == \"1\""


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_smoke_mode(path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("ORTHOSCOPE_SMOKE", "1")          # the kernel process inherits this environment
    nb = _read(path)
    # A last cell reports the kernel's interpreter: the notebook must run on this venv, not some other python3.
    nb.cells.append(nbformat.v4.new_code_cell(f"import sys; print({PREFIX_MARK!r}, sys.prefix)"))
    deadline = time.monotonic() + NOTEBOOK_BUDGET_S
    client = NotebookClient(
        nb, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
        # one deadline for the whole notebook: each cell may use what the earlier cells left
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
    )
    client.execute()                                      # raises CellExecutionError (with the traceback) on error
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    assert printed.split(PREFIX_MARK)[-1].strip() == sys.prefix, f"kernel ran on another interpreter: {printed!r}"
