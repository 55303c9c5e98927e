"""Porting refuses every malformed, truncated or foreign checkpoint with an error that names it."""
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from avjax import model_dir, porting
from avjax.porting import convert, torch_pickle
from tests import golden_spec as gs, jitted
from tests.conftest import needs_torch


def _write(tmp_path, state, fmt="safetensors", tag="best"):
    for part, sd in state.items():
        path = tmp_path / f"{part}_{tag}.{fmt}"
        if fmt == "safetensors":
            save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, str(path))
        else:
            import torch
            torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}, str(path))
    return tmp_path


def _mutated(original_state, part, fn):
    state = {p: dict(sd) for p, sd in original_state.items()}
    fn(state[part])
    return state


@pytest.mark.parametrize("part,mutate,message", [
    ("sound", lambda sd: sd.pop("features.8.running_var"), "missing keys ['features.8.running_var']"),
    ("frame", lambda sd: sd.__setitem__("features.9.weight", np.zeros(3, np.float32)),
     "unexpected keys ['features.9.weight']"),
    ("frame", lambda sd: sd.__setitem__("features.0.weight", np.zeros((64, 3, 5, 5), np.float32)),
     "key 'features.0.weight' has shape (64, 3, 5, 5), expected (64, 3, 7, 7)"),
    ("sound", lambda sd: sd.__setitem__("features.0.bias", np.full(64, np.nan, np.float32)),
     "key 'features.0.bias' holds non-finite values"),
    ("classifier", lambda sd: sd.__setitem__("fc1.weight", np.zeros((28, 512), np.float32)),
     "key 'fc1.weight' has shape (28, 512), expected (28, 1024)"),
])
def test_bad_keys_are_named(tmp_path, original_state, part, mutate, message):
    _write(tmp_path, _mutated(original_state, part, mutate))
    with pytest.raises(porting.CheckpointError) as e:
        porting.load_original_checkpoint(tmp_path, gs.NUM_CLASSES)
    assert message in str(e.value) and f"{part}_best.safetensors" in str(e.value)


def test_swapped_files_are_foreign(tmp_path, original_state):
    state = dict(original_state, sound=original_state["frame"], frame=original_state["sound"])
    _write(tmp_path, state)
    with pytest.raises(porting.CheckpointError, match="sound_best.safetensors: missing keys"):
        porting.load_original_checkpoint(tmp_path)


def test_wrong_num_classes(original_dir):
    with pytest.raises(porting.CheckpointError, match="fc1 has 28 classes, expected num_classes=11"):
        porting.load_original_checkpoint(original_dir, 11)


def test_truncated_and_garbage_files(tmp_path, original_dir):
    path = original_dir / "frame_best.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(porting.CheckpointError, match="frame_best.safetensors: not a readable"):
        porting.load_original_checkpoint(original_dir)
    garbage = tmp_path / "sound_x.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(porting.CheckpointError, match="sound_x.pth: cannot be read"):
        porting.load_state_dict(garbage)


def test_missing_and_ambiguous_sets(tmp_path, original_state):
    with pytest.raises(porting.CheckpointError, match="no complete"):
        porting.load_original_checkpoint(tmp_path)
    _write(tmp_path, original_state, tag="latest")
    _write(tmp_path, original_state, tag="ep10")
    with pytest.raises(porting.CheckpointError, match="several"):
        porting.load_original_checkpoint(tmp_path)
    os.remove(tmp_path / "frame_ep10.safetensors")
    with pytest.raises(porting.CheckpointError, match="frame_ep10.safetensors: missing frame"):
        porting.load_original_checkpoint(tmp_path / "sound_ep10.safetensors")
    _, variables = porting.load_original_checkpoint(tmp_path, tag="latest")
    assert "classifier" in variables["params"]


def test_torchvision_fc_is_the_only_ignored_key(original_state):
    sd = gs.frame_to_torchvision_keys(original_state["frame"])
    with pytest.raises(porting.CheckpointError, match="missing keys"):
        porting.resnet18_from_torchvision({k: v for k, v in sd.items() if k != "layer3.1.bn2.bias"})
    sd["avgpool.weight"] = np.zeros(1, np.float32)
    with pytest.raises(porting.CheckpointError, match=r"unexpected keys \['avgpool.weight'\]"):
        porting.resnet18_from_torchvision(sd)


def test_data_parallel_prefix_is_accepted(tmp_path, original_state):
    state = {p: {f"module.{k}": v for k, v in sd.items()} for p, sd in original_state.items()}
    _write(tmp_path, state)
    porting.load_original_checkpoint(tmp_path)


@needs_torch
def test_pth_files_refuse_non_state_dicts(tmp_path):
    import torch
    path = tmp_path / "sound_best.pth"
    torch.save({"epoch": 3, "state_dict": {"w": torch.zeros(2)}}, str(path))
    with pytest.raises(porting.CheckpointError, match="not a plain state_dict"):
        porting.load_state_dict(path)
    torch.save(torch.nn.Linear(2, 2), str(path))  # a pickled module: needs code execution
    with pytest.raises(porting.CheckpointError, match="cannot be read"):
        porting.load_state_dict(path)
    with pytest.raises(torch_pickle.UnsafePickleError, match="refusing to load global"):
        torch_pickle.load_zip_state_dict(path)


@needs_torch
def test_torch_free_reader_equals_torch_load(tmp_path, original_state):
    import torch
    _write(tmp_path, original_state, fmt="pth")
    for part in gs.PARTS:
        path = str(tmp_path / f"{part}_best.pth")
        ours = torch_pickle.load_zip_state_dict(path)
        theirs = torch.load(path, weights_only=True)
        assert list(ours) == list(theirs)
        for k in ours:
            np.testing.assert_array_equal(ours[k], theirs[k].numpy(), err_msg=k)
    # a non-contiguous (transposed) tensor and a float64 one survive too
    torch.save({"t": torch.arange(6.0).view(2, 3).t(), "d": torch.ones(2, dtype=torch.float64)},
               str(tmp_path / "x.pth"))
    ours = torch_pickle.load_zip_state_dict(str(tmp_path / "x.pth"))
    np.testing.assert_array_equal(ours["t"], np.arange(6.0).reshape(2, 3).T)
    assert ours["d"].dtype == np.float64


@pytest.mark.slow
def test_convert_command_writes_a_loadable_model(tmp_path, original_dir):
    out = tmp_path / "converted"
    assert convert.main([str(original_dir), str(out), "--num-classes", "28"]) == 0
    module, config, variables = model_dir.load_model(out)
    image, audio = gs.make_inputs(gs.SEED, **gs.SMALL)
    logits, _ = jitted.apply(module, variables, jnp.asarray(image, jnp.float32), jnp.asarray(audio, jnp.float32))
    ref_module, ref_vars = porting.load_original_checkpoint(original_dir)
    ref, _ = jitted.apply(ref_module, ref_vars, jnp.asarray(image, jnp.float32), jnp.asarray(audio, jnp.float32))
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(ref))
    assert config["num_classes"] == 28 and config["fusion"] == "concat"
    # refusing to overwrite, and a bad source, exit with 2 and a message
    proc = subprocess.run([sys.executable, "-m", "avjax.porting.convert", str(original_dir), str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "already holds a model" in proc.stderr


def test_eval_models_names_converted_directories(tmp_path, original_dir):
    """`--config.eval.models` (a string field, so the command line can set it) as name=DIR or JSON."""
    from avjax import runs
    out = tmp_path / "converted"
    assert convert.main([str(original_dir), str(out)]) == 0
    assert runs.extra_models(f"orig={out}, again = {out}") == {"orig": str(out), "again": str(out)}
    assert runs.extra_models(f'{{"orig": "{out}"}}') == {"orig": str(out)}
    assert runs.extra_models("") == {}
    with pytest.raises(ValueError, match="name=DIR"):
        runs.extra_models(str(out))
    with pytest.raises(ValueError, match="not a JSON object"):
        runs.extra_models('{"orig": ')
    with pytest.raises(FileNotFoundError, match="nowhere is not an avjax model directory"):
        runs.extra_models(f"orig={tmp_path / 'nowhere'}")
