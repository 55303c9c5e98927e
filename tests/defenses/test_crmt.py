"""CRMT: the head's row normalisation is the released OWNNorm with one group per class; the margin regulariser is the
released expression; on linear models with exact Lipschitz constants the bound never exceeds the true distance to
the runner-up's boundary (and L2 PGD cannot break an example inside it); the second step raises the mean bound."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax.attacks.l2_attack import pgd_l2
from avjax.defenses import crmt
from avjax.models.crmt_head import CRMTHead
from avjax.train.crmt import mean_bound, train_scales
from tests import jitted
from tests.conftest import needs_torch

C = 5


@needs_torch
def test_row_normalise_is_the_released_ownnorm_with_one_group_per_class():
    import torch

    def own_norm(weight, norm_groups):   # the released OWNNorm.forward, verbatim but for the random init of wm
        z = weight.view(norm_groups, weight.shape[0] // norm_groups, -1)
        zc = z - z.mean(dim=-1, keepdim=True)
        s = torch.matmul(zc, zc.transpose(1, 2))
        wm = torch.zeros(s.shape, dtype=s.dtype)
        for i in range(norm_groups):
            u, eig, _ = s[i].svd()
            wm[i] = u.mm(eig.rsqrt().diag()).mm(u.t())
        return wm.matmul(zc).view_as(weight)

    w = np.random.default_rng(0).normal(size=(C, 12))
    expected = own_norm(torch.tensor(w), C).numpy()
    np.testing.assert_allclose(np.asarray(crmt.row_normalise(jnp.asarray(w, jnp.float32))), expected, atol=1e-5)


def test_the_margin_regulariser_is_the_released_expression():
    rng = np.random.default_rng(1)
    o_v, o_a = rng.normal(size=(6, C)) * 3, rng.normal(size=(6, C)) * 3
    label = rng.integers(0, C, 6)
    rows = np.arange(6)
    released = sum(np.exp(o).sum(1) * np.exp(-o[rows, label]) - 1 for o in (o_v, o_a))
    np.testing.assert_allclose(np.asarray(crmt.margin_regulariser((jnp.asarray(o_v), jnp.asarray(o_a)),
                                                                  jnp.asarray(label))),
                               np.log(released + 1e-5), rtol=1e-5)


def test_the_head_fuses_row_normalised_modality_logits():
    f_v, f_a = jax.random.normal(jax.random.key(0), (3, 7)), jax.random.normal(jax.random.key(1), (3, 4))
    head = CRMTHead(C)
    variables = head.init(jax.random.key(2), f_v, f_a)
    p = variables["params"]
    assert np.all(np.asarray(p["scale_visual"]) == 0.1) and np.all(np.asarray(p["scale_audio"]) == 0.1)
    logits, (o_v, o_a) = head.apply(variables, f_v, f_a)
    w_v, w_a = crmt.row_normalise(p["kernel"][:7].T), crmt.row_normalise(p["kernel"][7:].T)
    np.testing.assert_allclose(np.asarray(o_v), np.asarray(f_v @ w_v.T), atol=1e-5)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(0.1 * o_v + 0.1 * o_a + p["bias"]), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(w_a), axis=1), 1.0, atol=1e-5)


def _linear_crmt(seed=0, dims=(6, 4), batch=32):
    """A CRMT model on raw inputs: o_m = x_m W_m^T with unit rows, so L[m, c] = 1 exactly."""
    k = jax.random.split(jax.random.key(seed), 6)
    w_v = crmt.row_normalise(jax.random.normal(k[0], (C, dims[0])))
    w_a = crmt.row_normalise(jax.random.normal(k[1], (C, dims[1])))
    a_v, a_a = jax.random.uniform(k[2], (C,), minval=0.2, maxval=1.0), jax.random.uniform(k[3], (C,), minval=0.2,
                                                                                            maxval=1.0)
    bias = 0.1 * jax.random.normal(k[4], (C,))
    x_v = jax.random.uniform(k[5], (batch, dims[0]), minval=0.3, maxval=0.7)
    x_a = jax.random.uniform(jax.random.fold_in(k[5], 1), (batch, dims[1]), minval=-0.3, maxval=0.3)

    def logits_fn(img, aud):
        return a_v * (img @ w_v.T) + a_a * (aud @ w_a.T) + bias

    label = jnp.argmax(logits_fn(x_v, x_a), -1)
    return logits_fn, (w_v, w_a), (a_v, a_a), bias, x_v, x_a, label


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 0.0), (0.0, 1.0)])
def test_with_exact_lipschitz_constants_the_bound_is_below_the_true_distance(weights):
    logits_fn, (w_v, w_a), scales, bias, x_v, x_a, label = _linear_crmt()
    logits = logits_fn(x_v, x_a)
    other = crmt.runner_up(logits, label)
    r = np.asarray(crmt.bound((x_v @ w_v.T, x_a @ w_a.T), scales, bias, jnp.ones((2, C)), label, other, weights))
    # the exact distance to the boundary between y and k along the modalities the weights let move
    dy = [scales[m][label, None] * w[label] - scales[m][other, None] * w[other] for m, w in enumerate((w_v, w_a))]
    norm = np.sqrt(sum(float(s) ** 2 * np.sum(np.square(np.asarray(d)), 1) for s, d in zip(weights, dy)))
    margin = np.asarray(logits[jnp.arange(32), label] - logits[jnp.arange(32), other])
    exact = margin / norm
    assert np.all(r > 0) and np.all(r <= exact + 1e-5)
    # L2 PGD inside the bound finds nothing
    _, _, fooled = pgd_l2(logits_fn, x_v, x_a, label, radius=float(np.min(r)) * 0.99, scale_visual=weights[0],
                          scale_audio=weights[1], steps=30)
    assert not np.any(np.asarray(fooled))


def test_the_second_step_raises_the_mean_bound():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, C, 256).astype(np.int32)
    o_v = rng.normal(size=(256, C)) + 3.0 * np.eye(C)[labels]      # visual logits separate the classes well
    o_a = rng.normal(size=(256, C)) + 0.5 * np.eye(C)[labels]      # audio ones barely
    lips = np.stack([np.full(C, 1.0), np.full(C, 1.0)]).astype(np.float32)
    scales, bias = (np.full(C, 0.1, np.float32), np.full(C, 0.1, np.float32)), np.zeros(C, np.float32)
    before = mean_bound(scales, bias, lips, o_v, o_a, labels)
    trained, losses = train_scales(scales, bias, lips, o_v, o_a, labels, epochs=20, batch_size=64, lr=0.05,
                                   momentum=0.9, weight_decay=0.0, seed=0)
    after = mean_bound(trained, bias, lips, o_v, o_a, labels)
    assert after > before + 0.1 and losses[-1] < losses[0]
    assert np.mean(trained[0]) > np.mean(trained[1])    # the weight goes to the modality with the larger margin


def test_the_head_is_built_by_config_for_the_concat_fusion_only_and_not_exported_to_the_original_layout():
    from avjax.models import build
    from avjax.porting.export import original_state_dicts
    module = build({"modality": "av", "num_classes": C, "width": 0.125, "head": "crmt"})
    assert module.head == "crmt" and build({"modality": "av", "num_classes": C}).head == "linear"
    with pytest.raises(ValueError, match="needs fusion 'concat'"):
        build({"modality": "av", "num_classes": C, "fusion": "film", "head": "crmt"})
    with pytest.raises(ValueError, match="unknown head"):
        build({"modality": "av", "num_classes": C, "head": "orth"})
    with pytest.raises(ValueError, match="the linear head"):
        original_state_dicts(module, None)


@pytest.mark.slow
def test_the_lipschitz_estimate_is_each_examples_own_gradient_norm_per_class():
    """The per-class input-gradient norms of the batched vjp equal those of each example differentiated alone."""
    from avjax.models import build
    from avjax.train.crmt import _gradient_norms
    module = build({"modality": "av", "num_classes": C, "width": 0.125, "head": "crmt"})
    k = jax.random.split(jax.random.key(0), 3)
    image, audio = jax.random.uniform(k[0], (3, 16, 16, 3)), jax.random.uniform(k[1], (3, 4096), minval=-1, maxval=1)
    variables = jitted.init(module, k[2], image, audio, train=False)
    o_v, o_a, n_v, n_a = jax.jit(lambda v, i, a: _gradient_norms(module, v, i, a))(variables, image, audio)
    logits, out = jitted.apply(module, variables, image, audio, train=False)
    np.testing.assert_allclose(np.asarray(o_v), np.asarray(out["fused"][:, :C]), atol=1e-5)

    @jax.jit
    def alone(img, aud, pick):   # one example: |d o_v,c / d image|, |d o_a,c / d audio| for the class `pick` selects
        fused = lambda i, a: module.apply(variables, i, a, train=False)[1]["fused"][0]   # noqa: E731
        g_v = jax.grad(lambda i: fused(i, aud)[:C] @ pick)(img)
        g_a = jax.grad(lambda a: fused(img, a)[C:] @ pick)(aud)
        return jnp.linalg.norm(g_v), jnp.linalg.norm(g_a)

    for b in (0, 2):
        for c in (0, C - 1):
            norm_v, norm_a = alone(image[b:b + 1], audio[b:b + 1], jnp.eye(C)[c])
            np.testing.assert_allclose(float(n_v[c, b]), float(norm_v), rtol=1e-4)
            np.testing.assert_allclose(float(n_a[c, b]), float(norm_a), rtol=1e-4)
