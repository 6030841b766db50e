"""Packaging: pyproject lists every package; ``import orthoscope`` is light, silent and writes nothing."""
import json
import subprocess
import sys
import tomllib
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["kan", "transformers", "triton", "ipywidgets", "matplotlib", "peft", "pandas", "sklearn", "IPython"]


def declared_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def found_packages() -> set[str]:
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "orthoscope").rglob("__init__.py")
             if "__pycache__" not in init.parts}
    found.add("orthoscope.kernels.triton")   # the top-level kernels/ folder, linked in without an __init__.py
    return found


def test_every_package_directory_is_listed_in_pyproject():
    missing = found_packages() - declared_packages()
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    stale = declared_packages() - found_packages()
    assert not stale, f"pyproject.toml lists packages that do not exist: {sorted(stale)}"


def test_kernels_folder_is_linked_in_and_not_a_package():
    # kernels/ must never be a regular top-level package: from the repository root (sys.path[0] under python -m,
    # pytest and notebooks) it would shadow the installed Hugging Face `kernels` distribution (issue 11).
    assert not (ROOT / "kernels" / "__init__.py").exists()
    link = ROOT / "orthoscope" / "kernels" / "triton"
    assert link.is_symlink() and link.resolve() == (ROOT / "kernels").resolve()
    assert "package-dir" not in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


PROBE = """
import json, sys, torch
before = {"dtype": str(torch.get_default_dtype()), "threads": torch.get_num_threads(),
          "grad": torch.is_grad_enabled(), "seed": torch.initial_seed()}
import orthoscope
{imports}
after = {"dtype": str(torch.get_default_dtype()), "threads": torch.get_num_threads(),
         "grad": torch.is_grad_enabled(), "seed": torch.initial_seed()}
heavy = [m for m in {heavy!r} if m in sys.modules]
sys.__stdout__.write("\\n@@" + json.dumps({"heavy": heavy, "same": before == after}))
"""


def import_in_fresh_process(tmp_path, imports=""):
    code = PROBE.replace("{imports}", imports).replace("{heavy!r}", repr(HEAVY))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    printed, _, result = proc.stdout.rpartition("\n@@")
    return printed, proc.stderr, json.loads(result)


def test_import_is_light_silent_and_writes_nothing(tmp_path):
    printed, errors, result = import_in_fresh_process(tmp_path)
    assert result["heavy"] == [], f"`import orthoscope` imported {result['heavy']}"
    assert printed == "" and errors == ""
    assert result["same"], "import orthoscope changed torch's global state"
    assert list(tmp_path.iterdir()) == []


def test_core_subpackages_stay_light(tmp_path):
    # one fresh process imports them in turn (core ones may use pandas/sklearn lazily, never the heavy extras)
    modules = ["orthoscope.tasks", "orthoscope.models", "orthoscope.probes", "orthoscope.kernels",
               "orthoscope.core.checkpoint", "orthoscope.training.run"]
    _, _, result = import_in_fresh_process(tmp_path, "\n".join(f"import {m}" for m in modules))
    heavy = [m for m in result["heavy"] if m not in ("pandas", "sklearn")]
    assert heavy == [], f"importing {modules} imported {heavy}"
    assert list(tmp_path.iterdir()) == []


def test_command_line_help_and_unknown_command(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "orthoscope", "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0 and "demo" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "orthoscope", "dmeo"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown command 'dmeo'" in bad.stderr


SHADOW_PROBE = """
import sys
import kernels, peft, transformers.modeling_utils
assert hasattr(kernels, "get_kernel"), f"`kernels` resolved to {getattr(kernels, '__path__', kernels)}"
print("ok", sys.path[0])
"""


def test_nothing_in_the_repository_shadows_installed_distributions():
    # transformers 5 imports the Hugging Face `kernels` distribution; a folder of ours named kernels/ with an
    # __init__.py, first on sys.path, used to win over it (issue 11). Check from the two places Python puts first on
    # sys.path: the repository root (python -m, pytest, notebooks) and benchmarks/ (scripts run directly).
    import importlib.util

    if importlib.util.find_spec("kernels") is None:
        import pytest
        pytest.skip("the Hugging Face `kernels` distribution is not installed")
    for folder in (ROOT, ROOT / "benchmarks"):
        proc = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(folder)!r})\n" + SHADOW_PROBE],
                              cwd=folder, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and proc.stdout.startswith("ok"), f"from {folder}:\n{proc.stderr[-2000:]}"


def test_no_top_level_folder_is_a_regular_package_and_benchmarks_are_prefixed():
    # A folder with __init__.py at the root, or a module in a folder whose scripts run directly, takes the import name
    # of any distribution of the same name; only orthoscope/ may be a package, and benchmark scripts are bench_*.py.
    packages = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists())
    assert packages == ["orthoscope"], packages
    scripts = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py"))
    assert scripts and all(name.startswith("bench_") for name in scripts), scripts


def test_version_agrees_with_pyproject():
    from orthoscope.core.version import __version__

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert project["version"] == __version__
