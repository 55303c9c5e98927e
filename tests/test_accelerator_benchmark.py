"""benchmarks/accelerator.py runs end to end (on the CPU, tiny sizes), so the script the accelerator table of
docs/benchmarks.md comes from does not rot between runs on a GPU."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_accelerator_benchmark_smoke(tmp_path):
    out = tmp_path / "acc"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "accelerator.py"), "--out", str(out), "--smoke",
         "--batch", "2", "--steps", "2", "--parts", "ceiling,train,attack,input,fed", "--videos", "4", "--workers", "0",
         "--input-batch", "4"],
        capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "FAILED" not in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((out / "results.json").read_text())
    assert set(r["rows"]) == {"train_bfloat16", "train_float32", "attack_bfloat16", "attack_float32"}
    for key, row in r["rows"].items():
        assert "error" not in row, (key, row)
        assert row["seconds"] > 0 and np.isclose(row["examples_per_s"], 2 / row["seconds"])
        assert row["forward_flops"] > 0
        # model FLOPs: 3 forwards a train step, 2 an attack step (forward + input gradient), per PGD step
        factor = 3 if key.startswith("train") else 2 * 2
        assert row["model_flops"] == factor * row["forward_flops"]
    # the XLA-counted train step (weight gradients, optimizer) costs at least the model FLOPs
    assert r["rows"]["train_float32"]["xla_flops"] >= r["rows"]["train_float32"]["model_flops"]
    table = (out / "results.md").read_text()
    assert "## Accelerator" in table and table.count("| avjax |") == 4
    rates = r["input"]["rates"], r["input"]["decoded_rates"]
    assert all(rate["0"] > 0 for rate in rates), rates
    assert "From the decoded format" in table
    assert r["fed"]["rates"]["0"] > 0 and "fed by the decoded format's pipeline" in table
