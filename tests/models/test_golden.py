"""avjax networks against the original PyTorch networks (committed goldens; live when torch exists)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import porting
from avjax.models import ResNet18
from tests import golden_spec as gs, jitted
from tests.conftest import needs_torch

ATOL = 1e-4  # the bound for float32 on CPU


def _run_avjax(module, variables, image, audio):
    (logits, out), inter = jitted.apply(module, variables, jnp.asarray(image), jnp.asarray(audio), train=False,
                                        mutable=["intermediates"])
    stages = {k: v[0] for part in ("visual_net", "audio_net")
              for k, v in inter["intermediates"][part].items()}
    return logits, out, stages


@pytest.fixture(scope="module")
def ported(tmp_path_factory, original_state):
    from safetensors.numpy import save_file
    d = tmp_path_factory.mktemp("orig")
    for part, sd in original_state.items():
        save_file(sd, str(d / f"{part}_best.safetensors"))
    return porting.load_original_checkpoint(d, gs.NUM_CLASSES)


@pytest.mark.slow
@pytest.mark.parametrize("size", ["small", "paper"])
def test_original_checkpoint_matches_pytorch(golden, ported, size):
    module, variables = ported
    image, audio = gs.make_inputs(gs.SEED, **getattr(gs, size.upper()))
    logits, out, stages = _run_avjax(module, variables, image.astype(np.float32), audio.astype(np.float32))
    for name in ("visual", "audio", "logits"):
        got = logits if name == "logits" else out[name]
        np.testing.assert_allclose(np.asarray(got), golden[f"{size}/{name}"], rtol=0, atol=ATOL,
                                   err_msg=f"{size}/{name}")
    for key in [k for k in golden if k.startswith(f"{size}/stage/")]:
        np.testing.assert_allclose(np.asarray(stages[key.rsplit("/", 1)[1]]), golden[key],
                                   rtol=0, atol=ATOL, err_msg=key)


def test_torchvision_trunk_matches_pytorch(golden, original_state):
    sd = gs.frame_to_torchvision_keys(original_state["frame"])
    sd["fc.weight"] = np.zeros((1000, 512), np.float32)
    sd["fc.bias"] = np.zeros((1000,), np.float32)
    variables = porting.resnet18_from_torchvision(sd)
    image, _ = gs.make_inputs(gs.SEED, **gs.PAPER)
    pooled, _ = ResNet18().apply(variables, jnp.asarray(image, jnp.float32))
    np.testing.assert_allclose(np.asarray(pooled), golden["paper/visual"], rtol=0, atol=ATOL)


@pytest.mark.slow
def test_float64_model_computes_in_float64(golden, original_state, tmp_path):
    from safetensors.numpy import save_file
    for part, sd in original_state.items():
        save_file(sd, str(tmp_path / f"{part}_best.safetensors"))
    with jax.enable_x64(True):
        module, variables = porting.load_original_checkpoint(tmp_path, dtype=np.float64)
        image, audio = gs.make_inputs(gs.SEED, **gs.SMALL)
        logits, out, _ = _run_avjax(module, variables, image, audio)
        assert logits.dtype == jnp.float64 and out["visual"].dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(logits), golden["small/logits"], atol=ATOL)


@pytest.mark.slow
@needs_torch
def test_goldens_regenerate_live_and_match_in_float64(golden, original_state, tmp_path):
    """Rebuild the PyTorch nets, check the committed golden, then compare avjax in float64."""
    import torch

    from tools import make_goldens

    nets = make_goldens.build_original_nets()
    for part, net in zip(gs.PARTS, nets):
        for key, value in net.state_dict().items():
            if key.endswith(("running_mean", "running_var")):
                # Calibrated by float32 train-mode passes: the reduction order (and so the last bit)
                # depends on the PyTorch build and the CPU's SIMD width.
                # Errors grow with depth, so the bound is relative to each statistic's scale.
                want = original_state[part][key]
                np.testing.assert_allclose(value.numpy(), want, rtol=0,
                                           atol=1e-5 * np.abs(want).max(), err_msg=key)
            else:  # drawn from torch's seeded generator: bit-identical everywhere
                np.testing.assert_array_equal(value.numpy(), original_state[part][key], err_msg=key)
    image, audio = gs.make_inputs(gs.SEED, **gs.SMALL)
    live32 = make_goldens.run_original(nets, image, audio, torch.float32)
    for name in ("visual", "audio", "logits"):
        # Another PyTorch build agrees with the committed golden within the float32 bound avjax is held to.
        np.testing.assert_allclose(live32[name], golden[f"small/{name}"], rtol=0, atol=ATOL)
    live64 = make_goldens.run_original(nets, image, audio, torch.float64)
    for part, net in zip(gs.PARTS, nets):
        torch.save(net.float().state_dict(), str(tmp_path / f"{part}_best.pth"))
    with jax.enable_x64(True):
        module, variables = porting.load_original_checkpoint(tmp_path / "sound_best.pth",
                                                             dtype=np.float64)
        logits, out, stages = _run_avjax(module, variables, image, audio)
        for name in ("visual", "audio"):
            np.testing.assert_allclose(np.asarray(out[name]), live64[name], rtol=0, atol=1e-9)
        np.testing.assert_allclose(np.asarray(logits), live64["logits"], rtol=0, atol=1e-9)
        for key, value in stages.items():
            np.testing.assert_allclose(np.asarray(value), live64[f"stage/{key}"], rtol=0, atol=1e-9)
