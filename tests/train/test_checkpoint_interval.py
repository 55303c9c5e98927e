"""`train.checkpoint_min_interval_s` skips epoch-end checkpoints younger than the interval; the last step is
always saved, and the trajectory does not depend on how often it was saved."""
import os

import pytest

from avjax.checkpoint import RunCheckpoints
from avjax.data import sources
from avjax.experiment import load_config
from avjax.train.loop import train_and_evaluate

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(min_interval_s):
    return load_config(os.path.join(REPO, "configs", "synthetic.py"), "runlocal,modality=av", **{
        "data.synthetic.sizes": (32, 8, 8),   # 4 steps an epoch at batch 8
        "train.num_epochs": 3, "train.checkpoint_min_interval_s": min_interval_s})


def _run(tmp_path, name, min_interval_s, max_to_keep):
    config = _config(min_interval_s)
    srcs, tfs = sources.build(config.data)
    saved = []
    original = RunCheckpoints.save

    def recording_save(self, step, *args, **kwargs):
        saved.append(int(step))
        return original(self, step, *args, **kwargs)

    RunCheckpoints.save = recording_save
    try:
        summary, _ = train_and_evaluate(config, str(tmp_path / name), srcs, tfs)
    finally:
        RunCheckpoints.save = original
    with RunCheckpoints(tmp_path / name / "checkpoints", max_to_keep=max_to_keep) as ckpts:
        latest = ckpts.latest_step()
    return summary, saved, latest


@pytest.mark.slow
def test_min_interval_saves_only_the_last_step_and_changes_nothing_else(tmp_path):
    every, saved_every, _ = _run(tmp_path, "every_epoch", 0.0, 2)
    sparse, saved_sparse, latest = _run(tmp_path, "sparse", 1e9, 2)
    assert saved_every == [4, 8, 12]
    assert saved_sparse == [12] and latest == 12
    assert sparse == every   # same validation history, best epoch and test accuracy
