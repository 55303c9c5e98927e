"""A damaged latest checkpoint is reported and the run resumes from the previous good step."""
import logging
import os

import jax.numpy as jnp
import numpy as np
import pytest

from avjax.checkpoint import RunCheckpoints, UnreadableCheckpoint, tree_digest


def _tree(step):
    return {"w": jnp.arange(2000.0) * step, "b": {"c": jnp.full((3, 4), step, jnp.int32)}}


def _save_steps(directory, steps=(1, 2)):
    with RunCheckpoints(directory) as ckpts:
        for s in steps:
            ckpts.save(s, _tree(s), _tree(-s), {"epoch": s})


def _data_files(step_dir):
    return [os.path.join(r, f) for r, _, files in os.walk(step_dir) for f in files if f"{os.sep}d{os.sep}" in
            os.path.join(r, f)]


def _flip_bytes(step_dir):
    """Overwrite the middle of the largest data file: orbax itself restores such a step silently."""
    path = max(_data_files(step_dir), key=os.path.getsize)
    data = bytearray(open(path, "rb").read())
    for i in range(len(data) // 4, len(data) // 2):
        data[i] ^= 0x5A
    open(path, "wb").write(bytes(data))


def _truncate(step_dir):
    for path in _data_files(step_dir):
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)


@pytest.mark.parametrize("damage", [_flip_bytes, _truncate], ids=["flipped-bytes", "truncated"])
def test_damaged_latest_step_falls_back_to_the_previous_one(tmp_path, caplog, damage):
    directory = tmp_path / "checkpoints"
    _save_steps(directory)
    damage(directory / "2")
    with RunCheckpoints(directory) as ckpts:
        with pytest.raises(UnreadableCheckpoint, match=str(directory / "2")):
            ckpts.restore(_tree(0), _tree(0), 2)
        with caplog.at_level(logging.WARNING):
            state, best, meta, step = ckpts.restore_latest_good(_tree(0), _tree(0))
        assert step == 1 and meta["epoch"] == 1
        np.testing.assert_array_equal(state["w"], _tree(1)["w"])
        np.testing.assert_array_equal(best["b"]["c"], _tree(-1)["b"]["c"])
        assert "could not be restored" in caplog.text and str(directory / "2") in caplog.text
        assert ckpts.latest_step() == 1
        ckpts.save(2, _tree(2), _tree(-2), {"epoch": 2})  # the resumed run saves that step again
        assert ckpts.restore_latest_good(_tree(0), _tree(0))[3] == 2
    assert os.listdir(tmp_path / "checkpoints.unreadable") == ["2"]  # kept for inspection


def test_no_readable_step_is_an_error_that_moves_nothing(tmp_path):
    directory = tmp_path / "checkpoints"
    _save_steps(directory)
    for step in ("1", "2"):
        _flip_bytes(directory / step)
    with RunCheckpoints(directory) as ckpts:
        with pytest.raises(UnreadableCheckpoint, match="no checkpoint step can be restored"):
            ckpts.restore_latest_good(_tree(0), _tree(0))
    assert sorted(d for d in os.listdir(directory) if d.isdigit()) == ["1", "2"]
    assert not (tmp_path / "checkpoints.unreadable").exists()


def test_digest_names_values_shapes_and_paths():
    base = tree_digest(_tree(1))
    assert base == tree_digest(_tree(1))
    assert base != tree_digest(_tree(2))
    assert base != tree_digest({"w": _tree(1)["w"], "b": {"d": _tree(1)["b"]["c"]}})
    assert base != tree_digest({"w": _tree(1)["w"].reshape(40, 50), "b": _tree(1)["b"]})
