"""A student opens a generated course notebook in JupyterLab (headless Chromium), runs it top to bottom without having
written anything, and sees the check's feedback rendered as the red box, then the one line of the failing check (an
autograder test must fail) — not an exception trace (issues 17, 27)."""
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_browser import CELL_TIMEOUT_MS, CHROMIUM, KERNEL_IDLE, RUN_CELL, lab_page  # noqa: E402

pytestmark = pytest.mark.browser
NOTEBOOK = "02_cayley.ipynb"


def test_student_notebook_shows_feedback_in_the_browser(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"headless Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from orthoscope.course.build import build

    root, work = tmp_path / "root", tmp_path / "work"
    build(tmp_path / "course")
    root.mkdir()
    work.mkdir()
    shutil.copy(tmp_path / "course" / "student" / NOTEBOOK, root / NOTEBOOK)
    t0 = time.monotonic()
    with lab_page(root, work, tmp_path, width=1300, height=900) as (page, url):
        page.goto(f"{url}/lab/tree/{NOTEBOOK}")
        page.wait_for_function(KERNEL_IDLE, timeout=CELL_TIMEOUT_MS)
        n_cells = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.length")
        cells = json.loads((root / NOTEBOOK).read_text())["cells"]
        check_cell = next(i for i, c in enumerate(cells)
                          if c["metadata"].get("nbgrader", {}).get("grade_id") == "cayley-check")
        for i in range(n_cells):
            errors = page.evaluate(RUN_CELL, i)
            if i == check_cell:                                  # the check fails the cell, with its message only
                assert len(errors) == 1 and errors[0].startswith("CheckFailed: ✗ cayley: not written yet"), errors
            else:
                assert not errors, f"cell {i} raised: {errors}"
            page.wait_for_function(KERNEL_IDLE, timeout=CELL_TIMEOUT_MS)
        box = page.locator(".orthoscope-feedback[data-ok='false']")
        box.first.wait_for(timeout=30_000)
        assert box.count() == 1 and box.first.is_visible()
        text = box.first.inner_text()
        assert "not written yet" in text and "hint:" in text, text
        # JupyterLab renders an error output as stderr: exactly one, the check's line — no traceback
        stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        assert stderr.count() == 1
        shown = stderr.first.inner_text()
        assert shown.startswith("CheckFailed: ✗ cayley: not written yet") and "Traceback" not in shown, shown
        outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
        assert any("Come back here when the check above passes." in t for t in outputs), outputs
    print(f"course browser test wall time: {time.monotonic() - t0:.1f} s")
