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
    if (ROOT / "kernels" / "__init__.py").exists():
        found.add("orthoscope.kernels")      # kernels/ is mapped onto orthoscope.kernels (package-dir)
    found |= {"orthoscope.kernels." + ".".join(i.parent.relative_to(ROOT / "kernels").parts)
              for i in (ROOT / "kernels").rglob("*/__init__.py")}
    return found


def test_every_package_directory_is_listed_in_pyproject():
    missing = found_packages() - declared_packages()
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    stale = declared_packages() - found_packages()
    assert not stale, f"pyproject.toml lists packages that do not exist: {sorted(stale)}"


def test_kernels_folder_is_mapped():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["package-dir"]["orthoscope.kernels"] == "kernels"


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
               "orthoscope.checkpoint", "orthoscope.run"]
    _, _, result = import_in_fresh_process(tmp_path, "\n".join(f"import {m}" for m in modules))
    heavy = [m for m in result["heavy"] if m not in ("pandas", "sklearn")]
    assert heavy == [], f"importing {modules} imported {heavy}"
    assert list(tmp_path.iterdir()) == []


def test_command_line_help_and_unknown_command(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "orthoscope", "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0 and "demo" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "orthoscope", "dmeo"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown command 'dmeo'" in bad.stderr
