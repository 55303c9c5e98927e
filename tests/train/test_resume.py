"""Long runs lose nothing. A run killed (SIGKILL) after its first checkpoint and started again equals an
uninterrupted run; so does a run whose latest checkpoint was damaged (it resumes from the previous good
step); an evaluation killed midway and started again skips what it finished and writes the same results."""
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


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted(tmp_path, straight):
    killed = tmp_path / "killed"
    _interrupt(killed, signal.SIGKILL)
    resumed = subprocess.run(_command(killed), cwd=REPO, env=ENV, check=True, capture_output=True,
                             text=True, timeout=600)
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert _summary(killed) == straight[0]


@pytest.mark.slow
def test_sigterm_saves_exits_cleanly_and_resumes(tmp_path, straight):
    workdir = tmp_path / "preempted"
    code, output = _interrupt(workdir, signal.SIGTERM)
    assert code == 0 and "SIGTERM: checkpoint saved" in output, output[-2000:]
    subprocess.run(_command(workdir), cwd=REPO, env=ENV, check=True, capture_output=True, timeout=600)
    assert _summary(workdir) == straight[0]


@pytest.mark.slow
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


def _evaluate_command(workdir):
    return [sys.executable, "-m", "avjax.main", "--config=configs/synthetic.py:runlocal,modality=av",
            f"--workdir={workdir}", "--config.stages=evaluate", "--config.data.synthetic.sizes=(32, 8, 8)",
            "--config.eval.batch_size=1", "--config.eval.max_examples=0", "--config.eval.methods=('fgsm','pgd')",
            "--config.eval.sweep_eps=()"]


def _reports(workdir):
    return {name: (workdir / name).read_bytes() for name in ("results.json", "results.md")}


@pytest.mark.slow
def test_evaluation_killed_midway_resumes_and_writes_the_same_results(tmp_path, straight):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for workdir in (whole, killed):
        shutil.copytree(straight[1], workdir)
    subprocess.run(_evaluate_command(whole), cwd=REPO, env=ENV, check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(_evaluate_command(killed), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    parts = killed / "evaluation" / "av" / "parts" / "table"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if parts.is_dir() and any(f.endswith(".npz") for f in os.listdir(parts)):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the evaluation finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    done_before = {f for f in os.listdir(parts) if f.endswith(".npz")}
    assert done_before and len(done_before) < 8 and not (killed / "results.json").exists()
    resumed = subprocess.run(_evaluate_command(killed), cwd=REPO, env=ENV, check=True, capture_output=True,
                             text=True, timeout=600)
    log = resumed.stdout + resumed.stderr
    attacked = {int(line.split("batch ")[1].split(",")[0]) - 1 for line in log.splitlines()
                if "attack av: batch " in line}
    assert attacked == set(range(8)) - {int(f[:-4]) for f in done_before}, log[-3000:]  # nothing twice
    assert _reports(killed) == _reports(whole)
    assert not parts.exists()  # per-batch parts are dropped once the model's result is stored
    again = subprocess.run(_evaluate_command(killed), cwd=REPO, env=ENV, check=True, capture_output=True,
                           text=True, timeout=600)
    assert "evaluated before" in again.stdout + again.stderr and _reports(killed) == _reports(whole)
