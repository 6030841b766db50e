"""Every benchmark script runs to its last line in its quick mode, started as a user starts it: ``python
benchmarks/bench_X.py``, so that benchmarks/ is sys.path[0] (issue 11: a module there named like a PyPI distribution
would shadow it). The numbers are not checked here — benchmarks prove targets, tests prove that they run."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# script -> (quick-mode arguments, text its last line starts with)
QUICK = {
    "bench_adapters.py": (["--quick", "--threads", "1"], "headline:"),
    "bench_dashboards.py": (["--quick"], "each Dashboard adds"),
    "bench_distributed.py": (["--quick"], "HEADLINE"),
    "bench_kan.py": (["--quick", "--rounds", "1", "--threads", "1", "--no-inkan"], "KAN layer fwd+bwd"),
    "bench_kernels.py": (["--quick", "--no-compile"], "HEADLINE"),
    "bench_llm.py": (["--quick"], "HEADLINE"),
    "bench_memory.py": (["--quick"], "HEADLINE"),
    "bench_notebooks.py": (["--quick"], "smoke mode: slowest"),
    "bench_optimizers.py": (["--quick", "--width", "32"], "POET/AdamW step time"),
    "bench_poet.py": (["--quick"], "POET-X memory mode"),
    "bench_recorder.py": (["--quick"], "recorder:"),
    "bench_sharpness.py": (["--quick"], "sharpness:"),
    "bench_spine.py": (["--quick", "--threads", "1"], "spine:"),
    "bench_stream.py": (["--quick"], "stream:"),
    "bench_throughput.py": (["--quick", "--threads", "1"], "throughput:"),
    "bench_watch.py": (["--quick"], "watch:"),
}


def test_every_benchmark_script_has_a_quick_mode_listed_here():
    scripts = {p.name for p in (ROOT / "benchmarks").glob("bench_*.py")}
    missing = scripts - set(QUICK) - {"bench_gpu_proof.py"}     # the GPU proof has its own --dry-run test
    assert not missing, f"add a quick mode for {sorted(missing)} to QUICK"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(QUICK))
def test_benchmark_runs_to_its_last_line(script):
    args, last = QUICK[script]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT / "benchmarks",
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(last), f"{script}'s last line: {lines[-1:]!r}"
