"""A small dataset trains for enough optimizer steps (train.min_steps), and a run too short or validated on too
few examples says so, with what to change."""
import logging

import ml_collections

from avjax.train.loop import fit_schedule, training_config_hash


def _config(**train):
    base = dict(batch_size=48, num_epochs=30, lr_steps=(10, 20), min_steps=0, few_steps=300, few_val=50)
    return ml_collections.ConfigDict(dict(train=dict(base, **train)))


def test_min_steps_stretches_epochs_and_decays_together(caplog):
    with caplog.at_level(logging.INFO):
        fitted = fit_schedule(_config(min_steps=1000), num_train=72, num_val=18)  # 1 step an epoch
    assert fitted.train.num_epochs == 1000 and tuple(fitted.train.lr_steps) == (333, 667)
    assert "training 1000 epochs instead of 30" in caplog.text
    assert "validation split has 18 examples" in caplog.text       # warned: the model is picked on noise
    assert "takes only" not in caplog.text                         # 1000 steps are not few
    # enough steps already: unchanged, nothing said about the schedule
    plenty = _config(min_steps=1000)
    assert fit_schedule(plenty, num_train=48 * 40, num_val=200).train.num_epochs == 30


def test_a_short_run_is_warned_about_with_the_fix(caplog):
    with caplog.at_level(logging.WARNING):
        fitted = fit_schedule(_config(), num_train=72, num_val=100)
    assert fitted.train.num_epochs == 30
    assert "takes only 30 optimizer steps" in caplog.text and "--config.train.min_steps" in caplog.text


def test_the_folder_config_asks_for_enough_steps_and_old_workdirs_keep_their_hash():
    from avjax.experiment import load_config
    config = load_config("configs/folder.py", None)
    assert config.train.min_steps >= 300
    # min_steps and the warning thresholds are not hashed themselves: a workdir of a config without them resumes
    with_fields = load_config("configs/synthetic.py", None)
    without = load_config("configs/synthetic.py", None)
    with without.unlocked():
        for field in ("min_steps", "few_steps", "few_val"):
            del without.train[field]
    assert training_config_hash(with_fields) == training_config_hash(without)
