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


def png_outputs(nb):
    """(cell index, PNG bytes) of every image a run notebook shows: ``image/png`` outputs and the PNG frames that
    HTML outputs embed (an animation's ``to_jshtml`` player carries every frame as a base64 data URL)."""
    import base64
    import re

    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" in data:
                yield i, base64.b64decode(data["image/png"])
            # to_jshtml breaks the base64 into lines ending in a backslash (a JavaScript line continuation)
            for frame in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=\\\n]+)", data.get("text/html", "")):
                yield i, base64.b64decode(frame.replace("\\", "").replace("\n", ""))


def blank_images(nb) -> list[str]:
    """Which of the notebook's images have nothing drawn: no pixel that is not fully transparent, or every visible
    pixel the same colour (issue 27: notebook 01's animation came out fully transparent after Run All)."""
    import io

    import numpy as np
    from PIL import Image

    blank = []
    for k, (cell, png) in enumerate(png_outputs(nb)):
        rgba = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
        visible = rgba[rgba[..., 3] > 0]
        if visible.size == 0 or len(np.unique(visible[:, :3], axis=0)) < 2:
            blank.append(f"cell {cell}, image {k}")
    return blank


def test_the_pixel_check_tells_a_drawn_image_from_a_blank_one():
    import base64
    import io

    import nbformat
    from matplotlib.figure import Figure

    def png(fig):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", transparent=True)
        return base64.b64encode(buf.getvalue()).decode()

    drawn, empty = Figure(figsize=(2, 1)), Figure(figsize=(2, 1))
    drawn.add_subplot().plot([0, 1], [1, 0])
    frames = f"<img src='data:image/png;base64,{png(empty)}'>"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[
        nbformat.v4.new_output("display_data", data={"image/png": png(drawn)}),
        nbformat.v4.new_output("display_data", data={"text/html": frames})])])
    assert len(list(png_outputs(nb))) == 2
    assert blank_images(nb) == ["cell 0, image 1"]


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
    blank = blank_images(nb)
    assert not blank, f"{path.name}: images with nothing drawn (fully transparent or one flat colour): {blank}"
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    assert printed.split(PREFIX_MARK)[-1].strip() == sys.prefix, f"kernel ran on another interpreter: {printed!r}"
