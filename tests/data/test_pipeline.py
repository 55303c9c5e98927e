"""The evaluation pipeline with worker processes: every batch, in order, and nothing left behind at exit."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = r'''
import sys
from absl import flags
flags.FLAGS(sys.argv[:1])
import numpy as np
from avjax.data import pipeline

class Source:
    def __len__(self):
        return 30
    def __getitem__(self, i):
        return {"image": np.full((16, 16, 3), i, np.float32), "audio": np.zeros(2048, np.float32),
                "label": np.int32(i)}

if __name__ == "__main__":
    for n in (2, 8):  # stopped early, and every batch (the last one padded and masked)
        ds = pipeline.eval_dataset(Source(), batch_size=4, workers=2)
        labels = [b["label"][b["mask"] > 0].tolist() for b in pipeline.exactly(ds, n)]
        print(n, sum(labels, []))
'''


@pytest.mark.slow
def test_eval_workers_leave_no_shared_memory_behind():
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300,
                         cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines == ["2 " + str(list(range(8))), "8 " + str(list(range(30)))]
    assert "leaked shared_memory" not in out.stderr, out.stderr[-3000:]
