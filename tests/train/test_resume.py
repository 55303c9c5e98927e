"""A run killed (SIGKILL) after its first checkpoint and started again equals an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _command(workdir):
    return [sys.executable, "-m", "avjax.main", "--config=configs/synthetic.py:runlocal,modality=av",
            f"--workdir={workdir}", "--config.stages=train", "--config.train.num_epochs=3",
            "--config.data.synthetic.sizes=(32, 8, 8)", "--config.train.checkpoint_every_steps=2"]


def _summary(workdir):
    with open(os.path.join(workdir, "runs", "av", "train.json")) as f:
        out = json.load(f)
    out.pop("wall_s")
    return out


def test_resume_after_sigkill_equals_uninterrupted(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    straight = tmp_path / "straight"
    subprocess.run(_command(straight), cwd=REPO, env=env, check=True, capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(killed), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt_dir = killed / "runs" / "av" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        steps = [d for d in (os.listdir(ckpt_dir) if ckpt_dir.exists() else []) if d.isdigit()]
        if steps:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "runs" / "av" / "train.json").exists()
    resumed = subprocess.run(_command(killed), cwd=REPO, env=env, check=True, capture_output=True,
                             text=True, timeout=600)
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert _summary(killed) == _summary(straight)
