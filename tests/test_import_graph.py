"""The package's layers hold: each folder of orthoscope/ is one layer, the root holds only the few modules that belong
there, the kernel seam sits below its callers, no import loop (lazy imports included), no upward import that is not a
documented, deliberate one (there are none today), and every module imports on its own in a fresh process.

The graph and the layers come from scripts/import_layers.py, which also draws the picture in docs/design.md."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_tool():
    spec = importlib.util.spec_from_file_location("import_layers", ROOT / "scripts" / "import_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


layers = _load_tool()
EDGES = layers.import_graph()


def test_the_graph_sees_lazy_imports_and_the_triton_sources():
    # A lazy import (inside a function) is an edge: demo imports the report only when asked to write one.
    assert ("orthoscope.demo", "orthoscope.viz.report") in EDGES
    assert any(a.startswith("orthoscope.kernels.triton.") for a, _ in EDGES)


def test_every_module_is_in_a_layer():
    for module in layers.modules():
        layers.layer_of(module)          # raises, naming the module, when a new module was not given a layer


def test_a_module_s_layer_is_its_folder_s():
    # Every folder of orthoscope/ is in exactly one layer, and every module in it is in that layer (none listed alone).
    folders = sorted(p.name for p in (ROOT / "orthoscope").iterdir() if (p / "__init__.py").exists())
    listed = [f for _, fs in layers.LAYERS for f in fs if f]
    assert sorted(listed) == folders, f"LAYERS lists {sorted(listed)}, orthoscope/ has {folders}"
    by_folder = {f: i for i, (_, fs) in enumerate(layers.LAYERS) for f in fs}
    for module in layers.modules():
        folder = "" if module in layers.ROOT_MODULES else module.split(".")[1]
        assert layers.layer_of(module) == by_folder[folder], module


ALLOWED_AT_ROOT = {"__init__.py", "__main__.py", "demo.py", "_moved.py"}


def test_the_root_of_the_package_holds_at_most_ten_named_modules():
    at_root = {p.name for p in (ROOT / "orthoscope").glob("*.py")}
    assert at_root == ALLOWED_AT_ROOT, (f"modules at the root of orthoscope/: {sorted(at_root)}; a new module goes in "
                                        "the folder of its layer (docs/design.md, 'Where does X go')")
    assert len(at_root) <= 10
    assert {f"orthoscope.{n[:-3]}" if n != "__init__.py" else "orthoscope" for n in at_root} == set(layers.ROOT_MODULES)


def test_a_module_left_at_the_root_is_refused_by_name():
    with pytest.raises(KeyError, match="ROOT_MODULES"):
        layers.layer_of("orthoscope.not_a_module_yet")


def test_no_import_loop():
    loops = layers.cycles(EDGES - set(layers.DELIBERATE))
    assert not loops, "import loops: " + "; ".join(" ↔ ".join(loop) for loop in loops)


def test_every_upward_import_is_deliberate_and_documented():
    undeclared = [edge for edge in layers.upward(EDGES) if edge not in layers.DELIBERATE]
    assert not undeclared, ("upward imports (a lower layer importing a higher one) — move the code down, or declare "
                            f"the import in DELIBERATE with its reason: {undeclared}")
    assert len(layers.DELIBERATE) <= 2, f"more than 2 declared upward imports: {sorted(layers.DELIBERATE)}"
    stale = [edge for edge in layers.DELIBERATE if edge not in EDGES]
    assert not stale, f"DELIBERATE lists imports the code no longer makes: {stale}"
    design = (ROOT / "docs" / "design.md").read_text()
    for importer, imported in layers.DELIBERATE:
        assert f"{importer} → {imported}" in design, f"docs/design.md does not explain {importer} → {imported}"


def test_run_reaches_the_config_layer_without_importing_it():
    # Run.config / Run.from_config are the config layer's; training/run.py must not import it, lazily or not.
    assert not [b for a, b in EDGES if a.startswith("orthoscope.training") and b.startswith("orthoscope.config")]
    out = subprocess.run([sys.executable, "-c", "import sys, orthoscope; from orthoscope.tasks import Digits; "
                          "print('orthoscope.config' in sys.modules)"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "False", out.stdout + out.stderr[-1000:]


def test_the_kernel_seam_imports_only_foundations():
    seam = layers.layer_of("orthoscope.kernels")
    for importer, imported in EDGES:
        if layers.layer_of(importer) == seam:
            assert layers.layer_of(imported) <= seam, f"{importer} imports its caller {imported}"


def test_the_picture_in_design_md_is_the_code_s():
    assert layers.mermaid(EDGES) in (ROOT / "docs" / "design.md").read_text(), (
        "docs/design.md's layer picture is out of date: paste the output of "
        "`python scripts/import_layers.py --mermaid`")


def test_every_module_imports_in_a_fresh_process():
    # One fresh interpreter imports each module in turn (sorted, so a module that only works after another one was
    # imported is still caught when it sorts first), and reports what failed. Triton sources need a GPU or the
    # interpreter and are imported by the kernel tests instead; `import orthoscope` must stay light.
    names = sorted(m for m in layers.modules() if ".kernels.triton." not in m and not m.endswith("__main__"))
    script = f"""
import importlib, json, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)
import orthoscope
heavy = [m for m in ("triton", "matplotlib", "transformers", "peft", "kan", "ipywidgets", "tensorboard", "wandb",
                     "mlflow", "trackio", "datasets", "lightning", "nbgrader", "yaml") if m in sys.modules]
failed = {{}}
for name in {names!r}:
    try:
        importlib.import_module(name)
    except Exception as e:
        failed[name] = f"{{type(e).__name__}}: {{e}}"
print(json.dumps({{"heavy": heavy, "failed": failed}}))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [], f"`import orthoscope` imports {result['heavy']} (keep them lazy)"
    assert result["failed"] == {}, result["failed"]


MOVED = sorted(__import__("orthoscope._moved", fromlist=["MOVED"]).MOVED.items())


@pytest.fixture(scope="module")
def old_names_imported():
    # One fresh interpreter imports every old name in turn and reports, for each, the warnings it raised and whether
    # it got the new module itself (not a copy: identity, monkeypatching and isinstance all carry over).
    script = f"""
import importlib, json, warnings
import orthoscope
out = {{}}
for alias, new in {MOVED!r}:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module(alias)
    out[alias] = {{"warnings": [f"{{w.category.__name__}}: {{w.message}}" for w in caught],
                  "same": old is importlib.import_module(new), "spec": old.__spec__.name}}
print(json.dumps(out))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("alias, new", MOVED, ids=[a for a, _ in MOVED])
def test_moved_modules_keep_their_old_names_with_a_warning(old_names_imported, alias, new):
    seen = old_names_imported[alias]
    assert any(w.startswith("DeprecationWarning") and f"{alias} moved to {new}" in w for w in seen["warnings"]), seen
    assert seen["same"] and seen["spec"] == new, seen


def test_an_old_name_fails_under_warnings_as_errors():
    out = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", "import orthoscope.run"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "orthoscope.run moved to orthoscope.training.run" in out.stderr


def test_the_moved_warning_points_at_the_importing_line(tmp_path):
    script = tmp_path / "user.py"
    script.write_text("import warnings\nwarnings.simplefilter('always')\nimport orthoscope\n"
                      "from orthoscope.history import History\northoscope.losses\n")
    out = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert f"{script}:4: DeprecationWarning: orthoscope.history moved to orthoscope.core.history" in out.stderr, \
        out.stderr
    assert f"{script}:5: DeprecationWarning: orthoscope.losses moved to orthoscope.methods.losses" in out.stderr
