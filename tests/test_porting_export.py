"""avjax -> PyTorch: the exported state_dicts are the inverse of porting, key for key and bit for bit, and
load strictly into the original networks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import porting
from avjax.models import AVClassifier
from tests import golden_spec as gs, jitted
from tests.conftest import needs_torch

NUM_CLASSES = 28  # the golden checkpoint's


def _ported(original_state):
    module = AVClassifier(num_classes=NUM_CLASSES, fusion="concat", visual_pool="avg")
    return module, porting.port_original_states(original_state, module)


def _assert_same_state(ours, theirs, part):
    assert sorted(ours) == sorted(theirs), part
    for key, value in theirs.items():
        if key.endswith("num_batches_tracked"):  # a counter avjax does not keep
            assert ours[key].dtype == np.int64 and ours[key].shape == np.shape(value)
            continue
        np.testing.assert_array_equal(ours[key], value, err_msg=f"{part}: {key}")
        assert ours[key].dtype == value.dtype


def test_export_is_the_inverse_of_porting(original_state):
    module, variables = _ported(original_state)
    exported = porting.original_state_dicts(module, variables)
    for part in gs.PARTS:
        _assert_same_state(exported[part], original_state[part], part)


def test_saved_checkpoint_loads_back_to_the_same_model(tmp_path, original_state):
    module, variables = _ported(original_state)
    paths = porting.save_original_checkpoint(module, variables, tmp_path, tag="ep3")
    assert sorted(paths) == ["classifier", "frame", "sound"]
    assert paths["sound"].endswith("sound_ep3.safetensors")
    loaded_module, loaded = porting.load_original_checkpoint(tmp_path, NUM_CLASSES)
    assert loaded_module == module
    same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), loaded, variables)
    assert all(jax.tree.leaves(same))


@pytest.mark.slow
def test_only_the_released_architecture_is_exported():
    module = AVClassifier(num_classes=3, fusion="sum", visual_pool="avg", width=0.25)
    variables = jitted.init(module, jax.random.key(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 4096)))
    with pytest.raises(ValueError, match="fusion='concat'"):
        porting.original_state_dicts(module, variables)
    with pytest.raises(ValueError, match=r"\.pth or \.safetensors"):
        porting.save_state_dict({}, "x.npz")


def test_torchvision_trunk_round_trip(original_state):
    torchvision_keys = gs.frame_to_torchvision_keys(original_state["frame"])
    trunk = porting.resnet18_from_torchvision(torchvision_keys)
    _assert_same_state(porting.resnet18_state_dict(trunk), torchvision_keys, "resnet18")


@needs_torch
def test_pth_files_load_strictly_into_the_original_networks(tmp_path, original_state):
    import torch
    from tests import torch_reference as ref
    module, variables = _ported(original_state)
    paths = porting.save_original_checkpoint(module, variables, tmp_path, ext=".pth")
    nets = {"sound": ref.ANet(), "frame": ref.FrameNet(ref.ResNet18()),
            "classifier": ref.ClassifierConcat(NUM_CLASSES)}
    for part, net in nets.items():
        state = torch.load(paths[part], weights_only=True)
        net.load_state_dict(state, strict=True)  # every key present, none extra, every shape right
        np.testing.assert_array_equal(next(iter(net.parameters())).detach().numpy(),
                                      original_state[part][next(iter(state))], err_msg=part)
