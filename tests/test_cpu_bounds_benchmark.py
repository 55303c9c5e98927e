"""benchmarks/cpu_bounds.py runs end to end at a tiny size, so the measurements docs/benchmarks.md cites
can be rerun; and its model of the table counts the passes that avjax's evaluation and the PyTorch baseline make."""
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import needs_torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


def test_table_passes_follow_the_attack_counts():
    import cpu_bounds
    settings = {"xA": ("audio",), "xV": ("visual",), "xAV": ("visual", "audio")}
    for steps in (10, 3):
        methods = {"fgsm": 1, "pgd": steps, "mim": steps}
        passes = cpu_bounds.table_passes(steps)
        for branch in ("visual", "audio"):
            attacked = [s for s, branches in settings.items() if branch in branches]
            # PyTorch: every step of every attack that perturbs the branch
            assert passes["torch"][f"{branch} gradient"] == sum(n * len(attacked) for n in methods.values())
            # avjax: one clean-point gradient stands in for every attack's first step (FGSM's only one)
            assert passes["avjax"][f"{branch} gradient"] == 1 + sum((n - 1) * len(attacked) for n in methods.values())
            # forwards: PyTorch classifies each of the 9 adversarial pairs with both branches, computes the frozen
            # branch of the 3 attacks that leave it alone, and the clean batch once
            assert passes["torch"][f"{branch} forward"] == 9 + (len(settings) - len(attacked)) * len(methods) + 1


@pytest.mark.slow
@needs_torch
def test_cpu_bounds_smoke():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "cpu_bounds.py"), "--size", "small",
                           "--repeats", "1", "--threads", "1"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert sum(line.startswith("[ceiling]") for line in lines) == 1
    attack = [line for line in lines if line.startswith("[attack]")]
    assert len(attack) == 4 and all(re.search(r"ratio to torch \d+\.\d\d", line) for line in attack), attack
    assert sum(line.startswith("[table]") for line in lines) == 2
    assert sum(line.startswith("[convs]") for line in lines) == 8 + 1
    wgrad = [line for line in lines if line.startswith("[wgrad]")]
    assert len(wgrad) == 8 + 6 + 1, wgrad
