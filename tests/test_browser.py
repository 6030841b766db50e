"""Real browser: JupyterLab on 127.0.0.1 + headless Debian Chromium driven by Playwright.

Opens notebooks/00_tour.ipynb (a copy, in a temporary root), runs it cell by cell waiting for the kernel to be idle
after each (an ipympl canvas drawn while later cells still run can stay blank), then checks what only a browser
shows (issue 19): no request leaves 127.0.0.1 during the whole tour; every canvas, image and Dashboard fits inside
its notebook column; the first Dashboard's controls exist and its ipympl canvas has drawn pixels (read back with
getImageData); its status line says it is viewing the step the tour scrubbed to; *step* trains and redraws; Home
and End on the slider reach the current range, with the spectrum's y-limits (read from the kernel) the same at both
ends; *play* trains on its own and *pause* stops it within the chunk in flight; the comparison Dashboard, which
shares the first run, then states that the runs stand at different steps and shows both at their common step.
With ORTHOSCOPE_SCREENSHOT_DIR set it also saves screenshots of both Dashboards there (docs/img). Needs
/usr/bin/chromium (``apt-get install chromium``); never ``playwright install``.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
TOUR = Path(__file__).resolve().parents[1] / "notebooks" / "00_tour.ipynb"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CELL_TIMEOUT_MS = 120_000

KERNEL_IDLE = """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
    return !!k && k.status === 'idle'; }"""

RUN_CELL = """async (i) => {
    const app = window.jupyterapp, panel = app.shell.currentWidget, cell = panel.content.widgets[i];
    panel.content.activeCellIndex = i;
    await app.commands.execute('notebook:run-cell');       // resolves when the cell's execution has finished
    if (cell.model.type !== 'code') return [];
    return cell.model.outputs.toJSON().filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue);
}"""

# Pixels of an ipympl canvas: how many are not (near-)white, and a hash of all of them.
CANVAS_PIXELS = """(c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let ink = 0, hash = 0;
    for (let i = 0; i < d.length; i += 4) {
        if (d[i + 3] > 0 && d[i] + d[i + 1] + d[i + 2] < 720) ink++;
        hash = (Math.imul(hash, 31) + d[i] * 65536 + d[i + 1] * 256 + d[i + 2]) | 0;
    }
    return {width: c.width, height: c.height, ink: ink, hash: hash};
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_lab_settings(settings: Path) -> None:
    """User settings of this throwaway JupyterLab: no news/update toasts (no network here), and every notebook cell
    kept in the DOM (the default windowing detaches off-screen cells, and with them the widgets under test)."""
    for plugin, values in {"apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
                           "notebook-extension/tracker": {"windowingMode": "none"}}.items():
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


@contextmanager
def jupyter_lab(root: Path, work: Path):
    """Start JupyterLab serving ``root``; yield its URL; stop it and the kernels it started, by PID."""
    port = _free_port()
    env = dict(os.environ, ORTHOSCOPE_SMOKE="1", JUPYTERLAB_SETTINGS_DIR=str(work / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"), JUPYTER_RUNTIME_DIR=str(work / "runtime"),
               JUPYTER_CONFIG_DIR=str(work / "config"), IPYTHONDIR=str(work / "ipython"))
    env.pop("MPLBACKEND", None)
    _write_lab_settings(work / "settings")
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip", "127.0.0.1", f"--port={port}",
           "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(work / "jupyter.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start; log:\n{(work / 'jupyter.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield url
    finally:
        kernels = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)             # the server shuts its kernels down on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        for pid in kernels:                          # anything it left behind, by PID
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


@contextmanager
def lab_page(root: Path, work: Path, tmp_path: Path, width: int = 1400, height: int = 1000):
    """JupyterLab serving ``root`` and one headless-Chromium page on it: yields ``(page, url)``. On failure, a
    full-page screenshot goes to ``tmp_path/failure.png`` and its path and the server log are printed."""
    from playwright import sync_api

    with jupyter_lab(root, work) as url, sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(work / "profile"), executable_path=CHROMIUM, headless=True,
                                                    args=CHROMIUM_ARGS, viewport={"width": width, "height": height})
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        try:
            yield page, url
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'failure.png'}; server log: {work / 'jupyter.log'}")
            raise
        finally:
            ctx.close()


# Every figure-like element in a notebook output, and the output column it sits in.
FIGURE_WIDTHS = """(within) => Array.from(document.querySelectorAll(
        '.jp-OutputArea-output canvas, .jp-OutputArea-output img, .jp-OutputArea-output .orthoscope-dashboard'))
    .filter(el => el.getBoundingClientRect().width > 0 && el.closest('.jp-OutputArea-output')
                  && (!within || el.closest(within)))
    .map(el => { const r = el.getBoundingClientRect();
                 const col = el.closest('.jp-OutputArea-output').getBoundingClientRect();
                 return {what: el.tagName + '.' + el.className, left: r.left, right: r.right, colLeft: col.left,
                         colRight: col.right}; })"""

# Run code in the notebook's kernel (queued behind widget messages like any request) and return what it printed.
KERNEL_EVAL = """async (code) => {
    const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    const future = k.requestExecute({code: code, silent: false, store_history: false});
    let text = '';
    future.onIOPub = (msg) => {
        if (msg.header.msg_type === 'stream') text += msg.content.text;
        if (msg.header.msg_type === 'error') text += 'ERROR ' + msg.content.ename + ': ' + msg.content.evalue;
    };
    await future.done;
    return text.trim();
}"""

TOUR_STEPS, TOUR_EVERY = 500, 20            # the tour's smoke settings (STEPS, PROBE_EVERY)


def test_tour_dashboard_renders_and_step_redraws(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"headless Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    root, work = tmp_path / "root", tmp_path / "work"
    root.mkdir()
    work.mkdir()
    shutil.copy(TOUR, root / TOUR.name)
    t0 = time.monotonic()
    shots = os.environ.get("ORTHOSCOPE_SCREENSHOT_DIR")
    with lab_page(root, work, tmp_path, height=1400 if shots else 1000) as (page, url):   # room for a whole shot
        outside = []                         # every request the page makes that leaves 127.0.0.1
        page.on("request", lambda r: outside.append(r.url) if not _local(r.url) else None)
        _drive_tour(page, url)
        assert not outside, f"requests that left the machine during the tour: {outside}"
    print(f"browser test wall time: {time.monotonic() - t0:.1f} s")


def _local(url: str) -> bool:
    return url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:"))


def _drive_tour(page, url):
    page.goto(f"{url}/lab/tree/{TOUR.name}")
    page.wait_for_function(KERNEL_IDLE, timeout=CELL_TIMEOUT_MS)
    n_cells = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.length")
    for i in range(n_cells):
        errors = page.evaluate(RUN_CELL, i)
        assert not errors, f"cell {i} raised: {errors}"
        page.wait_for_function(KERNEL_IDLE, timeout=CELL_TIMEOUT_MS)

    dashboards = page.locator(".orthoscope-dashboard")
    assert dashboards.count() == 2                               # the single run, then the weight-decay comparison
    dash = dashboards.first
    for control in (".orthoscope-play button", "button.orthoscope-step", "button.orthoscope-live", ".orthoscope-slider",
                    ".orthoscope-layer", "button.orthoscope-export"):
        assert dash.locator(control).first.is_visible(), f"dashboard control {control!r} not rendered"
    options = dash.locator(".orthoscope-layer select option").all_inner_texts()
    assert "layers.0" in options, options
    canvas = dash.locator(".jupyter-matplotlib-canvas-div canvas").first
    canvas.scroll_into_view_if_needed()
    page.wait_for_function(f"(c) => ({CANVAS_PIXELS})(c).ink > 0.02 * c.width * c.height", arg=canvas.element_handle(),
                           timeout=30_000)
    before = canvas.evaluate(CANVAS_PIXELS)
    assert before["width"] > 200 and before["height"] > 200, before
    _check_widths(page)
    status = dash.locator(".orthoscope-status .widget-html-content").first
    status_before = status.inner_text()
    assert f"step {TOUR_STEPS}" in status_before, status_before
    half = TOUR_STEPS // 2                                          # cell 7 scrubbed back: the view says so
    assert f"viewing step {half} of {TOUR_STEPS}" in status_before
    # every panel shows the last spectrum recorded at or before the slider's step (issue 27: one view state)
    shown = int(re.search(r"at step (\d+) \(scrubbed back\)", status_before).group(1))
    assert half - TOUR_EVERY < shown <= half, status_before

    dash.locator("button.orthoscope-step").click()
    page.wait_for_function("([el, text]) => el.innerText !== text", arg=[status.element_handle(), status_before],
                           timeout=60_000)
    stepped = TOUR_STEPS + TOUR_EVERY
    assert f"step {stepped}" in status.inner_text()                 # every=PROBE_EVERY more steps
    page.wait_for_function(f"([c, h]) => ({CANVAS_PIXELS})(c).hash !== h",
                           arg=[canvas.element_handle(), before["hash"]], timeout=30_000)
    after = canvas.evaluate(CANVAS_PIXELS)
    assert after["ink"] > 0.02 * after["width"] * after["height"], after

    _scrub_with_keys(page, dash, status, stepped)
    top = dash.locator(".jupyter-matplotlib-canvas-div canvas").last      # the event layer over the image
    top.hover(position={"x": 160, "y": 110})                       # over the loss panel: values on hover
    footer = dash.locator(".jupyter-matplotlib-footer").first
    page.wait_for_function("(el) => /step \\d+: .*train/.test(el.innerText)", arg=footer.element_handle(),
                           timeout=30_000)
    _play_pause_and_compare(page, dash, status, dashboards.last)
    shots = os.environ.get("ORTHOSCOPE_SCREENSHOT_DIR")
    if shots:                                                       # docs/img: the Dashboard as a student sees it
        dash.screenshot(path=str(Path(shots) / "dashboard-tour.png"))
        dashboards.last.screenshot(path=str(Path(shots) / "dashboard-compare.png"))
    _follows_the_column_width(page, dash)


def _follows_the_column_width(page, dash):
    """Narrower windows: each Dashboard's canvas shrinks to its column (the browser reports the column's width, the
    kernel resizes the figure and flows its panels two or one per row); a wide one: back to its full width. (The
    tour's own 900 px figure and animation player are plain matplotlib output and keep their size.)"""
    canvas = dash.locator(".jupyter-matplotlib-canvas-div canvas").first
    width = "(c) => c.getBoundingClientRect().width"
    full = canvas.evaluate(width)
    fits = """() => {
        const canvases = Array.from(document.querySelectorAll('.orthoscope-dashboard canvas'));
        return canvases.length === 4 && canvases.every(c => { const r = c.getBoundingClientRect();
            const col = c.closest('.jp-OutputArea-output');
            return r.width > 0 && col && r.right <= col.getBoundingClientRect().right + 1; }); }"""
    height = page.viewport_size["height"]
    column = "(d) => d.closest('.jp-OutputArea-output').getBoundingClientRect().width"
    for viewport in (900, 700):
        before = dash.evaluate(column)
        page.set_viewport_size({"width": viewport, "height": height})
        # JupyterLab lays its panels out again a frame or more later: until then the old (wider) column still fits
        page.wait_for_function(f"([d, w]) => ({column})(d) < w - 50", arg=[dash.element_handle(), before],
                               timeout=30_000)
        try:
            page.wait_for_function(fits, timeout=30_000)
        except Exception as exc:
            print("waiting for the Dashboards to fit:", exc)
            _check_widths(page, within=".orthoscope-dashboard")       # says which figure did not fit
            raise
        _check_widths(page, within=".orthoscope-dashboard")
        shots = os.environ.get("ORTHOSCOPE_SCREENSHOT_DIR")
        if shots and viewport == 900:                              # docs/img: two panels per row in a narrower column
            dash.screenshot(path=str(Path(shots) / "dashboard-narrow.png"))
    page.set_viewport_size({"width": 1400, "height": height})
    page.wait_for_function(f"([c, w]) => Math.abs(({width})(c) - w) < 2", arg=[canvas.element_handle(), full],
                           timeout=30_000)


def _check_widths(page, within: str | None = None):
    """Every canvas, image and Dashboard of every output (``within``: of those inside elements matching this CSS
    selector) fits inside its output column (no sideways scrolling)."""
    figures = page.evaluate(FIGURE_WIDTHS, within)
    assert len(figures) >= 4, figures
    wide = [f for f in figures if f["right"] > f["colRight"] + 1 or f["left"] < f["colLeft"] - 1]
    assert not wide, f"figures wider than their notebook column: {wide}"


def _readout(dash) -> int:
    return int(dash.locator(".orthoscope-slider .widget-readout").first.inner_text().strip())


def _scrub_with_keys(page, dash, status, newest):
    """Home/End on the slider reach the current range (End: the newest step, not the one at creation); the
    spectrum's y-axis is the same at both ends (fixed axes) while the canvas redraws."""
    handle = dash.locator(".orthoscope-slider .noUi-handle").first
    # read under the Dashboards' lock: a redraw on the widget thread clears the axes on its way (issue 27: y-limits
    # (0, 1) were once read mid-redraw)
    ylim = ("from orthoscope.viz.dashboard_support import DASHBOARD_LOCK\n"
            "with DASHBOARD_LOCK: print(tuple(round(v, 12) for v in dash.axes['spectrum'].get_ylim()), "
            "dash.viewed_step)")
    handle.focus()
    page.keyboard.press("Home")
    readout = dash.locator(".orthoscope-slider .widget-readout").first
    page.wait_for_function("(el) => el.innerText.trim() === '0'", arg=readout.element_handle(), timeout=30_000)
    at_home = _kernel_when(page, ylim, lambda out: out.endswith(" 0"))
    handle.focus()
    page.keyboard.press("End")
    page.wait_for_function("([el, n]) => el.innerText.trim() === String(n)",
                           arg=[dash.locator(".orthoscope-slider .widget-readout").first.element_handle(), newest],
                           timeout=30_000)     # the readout of the same slider (it is re-created as the range grows)
    at_end = _kernel_when(page, ylim, lambda out: out.endswith(f" {newest}"))
    assert at_home.rsplit(" ", 1)[0] == at_end.rsplit(" ", 1)[0], (at_home, at_end)   # fixed spectrum axes
    _one_story(page, "dash")
    page.wait_for_function("(el) => el.innerText.includes('following live')", arg=status.element_handle(),
                           timeout=30_000)


ONE_STORY = """from orthoscope.viz.dashboard_support import DASHBOARD_LOCK
with DASHBOARD_LOCK:
    v = {name}.view
    print(repr(({name}.axes['spectrum'].get_title().replace(chr(10), ' '), v.steps_text(), v.steps(),
                sorted({{float(m.get_xdata()[0]) for m, _ in {name}._markers}}), {name}.status.value)))"""


def _one_story(page, name):
    """Issue 27: the spectrum's title, the viewed-step markers and the status line name the steps of one view state
    (read in the kernel under the Dashboards' lock, so never mid-redraw)."""
    import ast

    title, steps_text, steps, markers, status = ast.literal_eval(page.evaluate(KERNEL_EVAL,
                                                                             ONE_STORY.format(name=name)))
    assert title.endswith(steps_text), (title, steps_text)
    assert markers == sorted({float(s) for s in steps.values()}), (markers, steps)
    for run, step in steps.items():
        assert f"at step {step} (" in status, (run, step, status)


def _kernel_when(page, code, ready, tries=40):
    """What ``code`` prints in the kernel once ``ready(output)`` holds (the slider's new value reaches the kernel a
    moment after the browser's readout shows it), polled every 0.5 s."""
    for _ in range(tries):
        out = page.evaluate(KERNEL_EVAL, code)
        if ready(out):
            return out
        page.wait_for_timeout(500)
    raise AssertionError(f"the kernel never got there; last output: {out!r}")


def _play_pause_and_compare(page, dash, status, compare):
    """Play trains on its own; pause stops it within the chunk in flight; the comparison Dashboard, which shares
    the first run, then shows both runs at their common step and states the difference."""
    start = _step(status.inner_text())
    play = dash.locator(".orthoscope-play button").first
    play.click()
    page.wait_for_function("([el, n]) => +(/step (\\d+)/.exec(el.innerText) || [0, 0])[1] >= n",
                           arg=[status.element_handle(), start + 3 * TOUR_EVERY], timeout=90_000)
    at_pause = _step(status.inner_text())
    play.click()
    page.wait_for_timeout(1000)
    page.wait_for_function(KERNEL_IDLE, timeout=CELL_TIMEOUT_MS)
    paused_at = _step(status.inner_text())
    page.wait_for_timeout(2500)
    assert _step(status.inner_text()) == paused_at
    assert paused_at - at_pause <= TOUR_EVERY, f"pause let {paused_at - at_pause} steps run after the click"
    expected = f"different steps (wd=1: {paused_at}, wd=0: {TOUR_STEPS})"
    said = _kernel_when(page, "print(compare.status.value)", lambda out: expected in out)
    assert "following live" in said, said             # per run: wd=1 at its newest step, wd=0 at its own
    compare_status = compare.locator(".orthoscope-status .widget-html-content").first
    page.wait_for_function("([el, text]) => el.innerText.includes(text)", arg=[compare_status.element_handle(),
                                                                              expected], timeout=30_000)
    labels = page.evaluate(KERNEL_EVAL, "print([l.get_label() for l in compare.axes['spectrum'].lines[:2]], "
                                        "compare.view.steps())")
    import ast

    steps = ast.literal_eval(labels.split("] ", 1)[1])                       # {run: its shown step}
    assert steps["wd=0"] == TOUR_STEPS and steps["wd=1"] > TOUR_STEPS, labels   # each at its own newest step
    assert labels.startswith(f"['wd=1 · step {steps['wd=1']}', 'wd=0 · step {TOUR_STEPS}']"), labels
    _one_story(page, "compare")


def _step(status_text: str) -> int:
    return int(re.search(r"step (\d+)", status_text).group(1))

