"""The GPU proof (benchmarks/bench_gpu_proof.py) rehearsed on the CPU: every part runs end to end in Triton's
interpreter with tiny shapes, so no minute of a lent GPU is spent on a script that crashes; and its correctness part
really fails when a kernel and its twin disagree."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_gpu_proof.py"


@pytest.fixture(scope="module")
def proof():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import bench_gpu_proof
        yield bench_gpu_proof
    finally:
        sys.path.remove(str(SCRIPT.parent))


@pytest.mark.slow
def test_dry_run_runs_every_part_and_writes_the_report(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path)], cwd=SCRIPT.parent,
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_proof.json").read_text())
    parts = {k: v["status"] for k, v in report.items() if isinstance(v, dict) and "status" in v}
    assert parts == dict.fromkeys(("correctness", "kernel_speed", "poet_layer", "llm_1b", "fsdp_blocks", "harmonic"),
                                  "ok"), parts
    fsdp = report["fsdp_blocks"]                  # per-block FSDP2 at world size 2 (gloo) in the rehearsal
    assert fsdp["world_size"] == 2 and set(fsdp["rows"]) == {"adamw bf16", "poet_mem fp32"}
    assert all(r["tokens_per_s"] > 0 for r in fsdp["rows"].values()), fsdp
    checks = report["correctness"]["checks"]
    assert len(checks) >= 20 and all(c["ok"] for c in checks)
    assert {c["dtype"] for c in checks} == {"float32", "bfloat16"}
    assert any("perm" in c["case"] for c in checks) and any("compile=True" in c["case"] for c in checks)
    assert "| target | limit | measured | verdict |" in (tmp_path / "gpu_proof.md").read_text()
    assert proc.stdout.strip().splitlines()[-1].startswith("HEADLINE:")


def test_a_wrong_twin_fails_the_correctness_part(proof, monkeypatch):
    from orthoscope.kernels import reference

    right = reference.cayley_neumann
    monkeypatch.setattr(reference, "cayley_neumann", lambda q, b, k=3: right(q, b, k).transpose(-1, -2))
    monkeypatch.setattr(proof, "kan_compiled_vs_eager", lambda device: {"case": "kan", "ok": True})
    with pytest.raises(AssertionError, match=r"cayley_neumann b=4 r=7 float32: forward"):
        proof.correctness("cpu", (torch.float32,))


def test_a_failing_part_is_recorded_and_the_next_still_runs(proof):
    import time

    report, started = {}, time.monotonic()
    proof.run_part("poet_layer", lambda: 1 / 0, report, started)
    proof.run_part("harmonic", lambda: {"impls": {}}, report, started)
    assert report["poet_layer"]["status"] == "failed" and "ZeroDivisionError" in report["poet_layer"]["error"]
    assert report["harmonic"]["status"] == "ok"


def test_targets_judge_measured_figures(proof):
    report = {"correctness": {"status": "ok", "checks": [{"ok": True}]},
              "kernel_speed": {"ms": {"cnp b=32 eager": 3.0, "cnp b=32 compile": 1.2, "cnp b=32 triton": 1.0}},
              "poet_layer": {"poet_mem_vs_linear": 1.3},
              "llm_1b": {"methods": {"adamw": {"peak_mb": 100.0, "tokens_per_s": 10.0},
                                     "poet_mem": {"peak_mb": 45.0, "tokens_per_s": 8.0}}},
              "harmonic": {"impls": {"triton": {"seconds": 1.0, "peak_bytes": 4}, "eager": {"seconds": 2.0,
                                                                                        "peak_bytes": 10}}}}
    verdicts = {name: verdict for name, _, _, verdict in proof.targets(report)}
    assert verdicts["CNP b=32: Triton vs eager"] == "pass"
    assert verdicts["CNP b=32: Triton vs torch.compile"] == "pass"
    assert verdicts["POET-X layer (mem) vs nn.Linear"] == "pass"
    assert verdicts["1B POET memory mode peak memory vs AdamW"] == "MISS"       # 0.45 > 0.40
    assert verdicts["1B POET memory mode tokens/s vs AdamW"] == "pass"
    assert verdicts["fused harmonic peak memory vs unfused (vocab 32k)"] == "pass"
    assert verdicts["fused harmonic time vs liger-kernel FLCE"] == "—"           # no liger row: unmeasured


def test_per_block_fsdp_rows_are_reported(proof, tmp_path):
    """Part 1f's rows reach gpu_proof.md: tokens/s, step time, peak memory per rank, or the error of a method."""
    report = {"device": "GPU", "date": "today", "torch": "2", "triton": "3", "command": "x",
              "fsdp_blocks": {"status": "ok", "seconds": 1.0, "world_size": 8, "size": "1b", "seq": 1024,
                              "batch_per_rank": 8, "rows": {
                                  "adamw bf16": {"tokens_per_s": 1.5e5, "step_ms": 437.0, "peak_mb": 9000.0},
                                  "poet_mem fp32": {"error": "OutOfMemoryError: CUDA out of memory"}}}}
    proof.write(report, tmp_path)
    text = (tmp_path / "gpu_proof.md").read_text()
    assert "Per-block FSDP2, 1b Llama, 8 rank(s), 8 × 1024 tokens per rank" in text
    assert "| adamw bf16 | 150000 | 437.0 | 9000 | |" in text
    assert "| poet_mem fp32 | — | — | — | OutOfMemoryError: CUDA out of memory |" in text
