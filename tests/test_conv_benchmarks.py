"""The convolution benchmarks run end to end at a tiny size: the stand-alone XLA:CPU reproducer (which says
whether avjax's small-map workaround is still needed) and the formulations benchmark the rules cite."""
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import needs_torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, *args):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), *args], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    return proc


@pytest.mark.slow
def test_small_map_reproducer_prints_both_formulations_and_a_verdict():
    proc = _run("xla_small_map.py", "--repeats", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("3x3 conv")]
    assert len(rows) == 3 and all(re.search(r"conv_general_dilated [\d.]+ ms \| patches @ kernel [\d.]+ ms \| "
                                            r"ratio [\d.]+$", row) for row in rows), proc.stdout
    assert re.search(r"^workaround (still|no longer) needed: worst ratio [\d.]+", proc.stdout, re.M), proc.stdout
    # --check's exit status follows the verdict: with an impossible threshold the workaround is "not needed"
    assert _run("xla_small_map.py", "--repeats", "1", "--check", "--needed", "1e9").returncode == 1


@pytest.mark.slow
@needs_torch
def test_conv_formulations_smoke():
    proc = _run("conv_formulations.py", "--parts", "model", "--sizes", "32", "--repeats", "1", "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("[model]")]
    assert len(rows) == 2, proc.stdout
    assert all(re.search(r"ratio to torch: avjax \d+\.\d\d, direct \d+\.\d\d$", row) for row in rows), rows
