"""A non-finite loss stops training with a clear error; the checkpoints on disk stay good ones."""
import importlib.util
import os

import numpy as np
import pytest

from avjax.checkpoint import RunCheckpoints
from avjax.data import sources
from avjax.train.loop import NonFiniteLossError, setup_run, train_and_evaluate

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_exploding_run_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    spec = importlib.util.spec_from_file_location("cfg", os.path.join(REPO, "configs", "synthetic.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("runlocal,modality=av")
    config.data.synthetic.sizes = (32, 8, 8)
    config.train.num_epochs = 10
    config.train.log_every_steps = 1
    config.train.checkpoint_every_steps = 1
    config.train.lr.head = 1e4   # diverges within a few steps
    config.train.lr.audio = 1e4
    srcs, tfs = sources.build(config.data)
    with pytest.raises(NonFiniteLossError, match="non-finite (loss|parameters)"):
        train_and_evaluate(config, str(tmp_path), srcs, tfs)
    template = setup_run(config, srcs, tfs).state
    with RunCheckpoints(tmp_path / "checkpoints") as ckpts:
        last = ckpts.latest_step()
        assert last is not None
        state, _, _ = ckpts.restore(template, template.variables())
    for leaf in __import__("jax").tree.leaves(state.params):
        assert np.all(np.isfinite(np.asarray(leaf)))
