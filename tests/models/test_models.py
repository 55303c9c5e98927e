"""Model behaviour: parameter counts, fusion formulas, dtypes, input lengths, BatchNorm semantics."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax.models import FUSIONS, AudioNet, ResNet18, build
from avjax.models.variants import NUM_CLASSES, PARAM_COUNTS, all_variants
from tests import jitted
from tests.conftest import needs_torch


def _count(config):
    module = build(config)
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                                jnp.zeros((1, 4096))))
    return sum(x.size for x in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize("variant", all_variants())
def test_every_variant_is_in_the_param_count_table(variant):
    modality, fusion, width = variant
    assert variant in PARAM_COUNTS
    config = dict(modality=modality, width=width, num_classes=NUM_CLASSES)
    if fusion:
        config["fusion"] = fusion
    assert _count(config) == PARAM_COUNTS[variant]


def test_param_counts_match_the_pytorch_originals():
    assert _count(dict(modality="visual", num_classes=10)) - (512 * 10 + 10) == 11_176_512
    assert _count(dict(modality="audio", num_classes=10)) - (512 * 10 + 10) == 1_566_528


def _features(seed, n=3, d=6):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(n, d)), jnp.float32), jnp.asarray(rng.normal(size=(n, d)), jnp.float32)


def _sig(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_fusion_heads_follow_the_appendix(name):
    f_v, f_a = _features(0)
    head = FUSIONS[name]()
    variables = head.init(jax.random.key(1), f_v, f_a)
    got = np.asarray(head.apply(variables, f_v, f_a))
    v, a = np.asarray(f_v), np.asarray(f_a)
    expected = {
        "sum": lambda: a + v,
        "concat": lambda: np.concatenate([v, a], -1),
        "film": lambda: (a @ np.asarray(variables["params"]["alpha"]["kernel"])
                         + np.asarray(variables["params"]["alpha"]["bias"])) * v + a,
        "gated_sum": lambda: _sig(a) * v + _sig(v) * a,
        "gated_concat": lambda: np.concatenate([_sig(a) * v, _sig(v) * a], -1),
    }[name]()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert got.shape[-1] == FUSIONS[name].output_dim(6)


@pytest.mark.slow
@pytest.mark.parametrize("length", [4096, 11025, 65535])
def test_audio_net_takes_any_length(length):
    net = AudioNet(width=0.125)
    audio = jnp.zeros((2, length))
    variables = jitted.init(net, jax.random.key(0), audio)
    assert jitted.apply(net, variables, audio).shape == (2, 64)
    with pytest.raises(ValueError, match="too short"):
        net.apply(variables, jnp.zeros((2, 2000)))


def test_visual_pooling_modes_and_map():
    image = jax.random.uniform(jax.random.key(0), (2, 64, 64, 3))
    variables = jitted.init(ResNet18(width=0.125), jax.random.key(1), image)
    avg, fmap = jitted.apply(ResNet18(width=0.125, pool="avg"), variables, image)
    mx, _ = jitted.apply(ResNet18(width=0.125, pool="max"), variables, image)
    assert fmap.shape == (2, 2, 2, 64)
    np.testing.assert_allclose(avg, fmap.mean((1, 2)), rtol=1e-6)
    np.testing.assert_allclose(mx, fmap.max((1, 2)), rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["av", "audio", "visual"])
def test_unimodal_models_ignore_the_other_modality(modality):
    model = build(dict(modality=modality, width=0.125, num_classes=4))
    key = jax.random.key(0)
    image, audio = jax.random.uniform(key, (2, 32, 32, 3)), jax.random.uniform(key, (2, 4096), minval=-1)
    variables = jitted.init(model, key, image, audio)
    logits, out = jitted.apply(model, variables, image, audio)
    logits_a, _ = jitted.apply(model, variables, 1 - image, audio)
    logits_v, _ = jitted.apply(model, variables, image, -audio)
    assert logits.shape == (2, 4) and "fused" in out
    assert np.array_equal(logits, logits_a) == (modality == "audio")
    assert np.array_equal(logits, logits_v) == (modality == "visual")


@pytest.mark.slow
def test_compute_dtype_follows_inputs_and_config():
    model = build(dict(modality="av", width=0.125, num_classes=4))
    image, audio = jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 4096))
    variables = jitted.init(model, jax.random.key(0), image, audio)
    assert jitted.apply(model, variables, image, audio)[0].dtype == jnp.float32
    bf16 = build(dict(modality="av", width=0.125, num_classes=4, dtype="bfloat16"))
    assert jitted.apply(bf16, variables, image, audio)[0].dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="unknown fusion"):
        build(dict(modality="av", fusion="attention", num_classes=4))
    with pytest.raises(ValueError, match="unknown modality"):
        build(dict(modality="text", num_classes=4))


@needs_torch
def test_batchnorm_train_mode_matches_pytorch():
    """Train-mode output and running-statistics update equal torch.nn.BatchNorm1d's."""
    import torch

    from avjax.models.layers import BatchNorm

    x = np.random.default_rng(0).normal(2.0, 3.0, size=(4, 7, 5))  # (B, L, C)
    bn = BatchNorm()
    variables = bn.init(jax.random.key(0), jnp.asarray(x, jnp.float32), train=False)
    y, updates = bn.apply(variables, jnp.asarray(x, jnp.float32), train=True, mutable=["batch_stats"])
    ref = torch.nn.BatchNorm1d(5)
    ref.train()
    y_ref = ref(torch.from_numpy(x).float().permute(0, 2, 1)).permute(0, 2, 1).detach().numpy()
    np.testing.assert_allclose(np.asarray(y), y_ref, atol=1e-5)
    np.testing.assert_allclose(updates["batch_stats"]["mean"], ref.running_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(updates["batch_stats"]["var"], ref.running_var.numpy(), atol=1e-5)
