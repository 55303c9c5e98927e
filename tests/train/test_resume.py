"""A run killed (SIGKILL) after its first checkpoint and started again equals an uninterrupted run;
so does a run whose latest checkpoint was damaged (it resumes from the previous good step)."""
import json
import os
import shutil
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


ENV = dict(os.environ, PYTHONUNBUFFERED="1")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    subprocess.run(_command(workdir), cwd=REPO, env=ENV, check=True, capture_output=True, timeout=600)
    return _summary(workdir), workdir


def _interrupt(workdir, sig):
    """Start a run, send `sig` once its first checkpoint exists, wait for it to end."""
    proc = subprocess.Popen(_command(workdir), cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    ckpt_dir = workdir / "runs" / "av" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any(d.isdigit() for d in (os.listdir(ckpt_dir) if ckpt_dir.exists() else [])):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=300)
    assert not (workdir / "runs" / "av" / "train.json").exists()
    return proc.returncode, output


def test_resume_after_sigkill_equals_uninterrupted(tmp_path, straight):
    killed = tmp_path / "killed"
    _interrupt(killed, signal.SIGKILL)
    resumed = subprocess.run(_command(killed), cwd=REPO, env=ENV, check=True, capture_output=True,
                             text=True, timeout=600)
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert _summary(killed) == straight[0]


def test_sigterm_saves_exits_cleanly_and_resumes(tmp_path, straight):
    workdir = tmp_path / "preempted"
    code, output = _interrupt(workdir, signal.SIGTERM)
    assert code == 0 and "SIGTERM: checkpoint saved" in output, output[-2000:]
    subprocess.run(_command(workdir), cwd=REPO, env=ENV, check=True, capture_output=True, timeout=600)
    assert _summary(workdir) == straight[0]


def test_damaged_latest_checkpoint_resumes_from_the_previous_step(tmp_path, straight):
    from tests.train.test_checkpoint import _flip_bytes
    workdir = tmp_path / "damaged"
    shutil.copytree(straight[1], workdir)
    run_dir = workdir / "runs" / "av"
    for finished in ("train.json", "model"):  # make the finished run train again from its checkpoints
        path = run_dir / finished
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    steps = sorted(int(d) for d in os.listdir(run_dir / "checkpoints") if d.isdigit())
    _flip_bytes(run_dir / "checkpoints" / str(steps[-1]) / "state")
    resumed = subprocess.run(_command(workdir), cwd=REPO, env=ENV, check=True, capture_output=True,
                             text=True, timeout=600)
    log = resumed.stdout + resumed.stderr
    assert f"resuming from step {steps[-2]}" in log and "could not be restored" in log, log[-3000:]
    assert os.listdir(run_dir / "checkpoints.unreadable") == [str(steps[-1])]
    assert _summary(workdir) == straight[0]
