"""Max pooling and ties: the stem pool sends a window's gradient to its first maximum (PyTorch, XLA's
select-and-scatter); the audio net's pools split it between tied elements (docs/method.md, "Max pools and ties").

Inputs are small integers after a ReLU, so most windows hold tied maxima (zeros, and equal positive
values as in a constant image region or silence): where the gradient of a tie goes is what is tested.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from avjax.models.layers import max_first, max_pool_1d_pairs, max_pool_3x3_s2_p1
from tests.conftest import needs_torch


def _tied(shape, seed=0):
    rng = np.random.default_rng(seed)
    return np.maximum(rng.integers(-2, 3, shape), 0).astype(np.float64)


def _vjp(fn, x, seed=1):
    out = jax.eval_shape(fn, x)
    g = np.random.default_rng(seed).normal(size=out.shape).astype(out.dtype)
    y, dx = jax.jit(lambda x, g: (fn(x), jax.vjp(fn, x)[1](g)[0]))(x, jnp.asarray(g))  # one program
    return np.asarray(y), np.asarray(dx), g


def _split_ties_pool(x):
    """The stem pool with `jnp.maximum`, whose gradient splits a tie evenly (what the stem pool must not do)."""
    h, w = (x.shape[1] + 1) // 2, (x.shape[2] + 1) // 2
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    out = padded[:, 0:2 * h - 1:2, 0:2 * w - 1:2]
    for i in range(3):
        for j in range(3):
            out = jnp.maximum(out, padded[:, i:i + 2 * h - 1:2, j:j + 2 * w - 1:2])
    return out


@pytest.mark.parametrize("hw", [(8, 8), (7, 9), (1, 2)])
def test_stem_pool_equals_reduce_window_pool_ties_included(hw):
    """Bit for bit the values and gradients of nn.max_pool (XLA's select-and-scatter, first max)."""
    x = jnp.asarray(_tied((2, *hw, 3)), jnp.float32)
    reference = lambda v: nn.max_pool(v, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))  # noqa: E731
    y, dx, g = _vjp(max_pool_3x3_s2_p1, x)
    y_ref, pull = jax.vjp(reference, x)
    np.testing.assert_array_equal(y, np.asarray(y_ref))
    np.testing.assert_array_equal(dx, np.asarray(pull(jnp.asarray(g))[0]))
    np.testing.assert_allclose(dx.sum(), g.sum(), rtol=1e-5)
    if hw != (1, 2):  # the ties are there: splitting them between elements would give another gradient
        assert not np.array_equal(dx, _vjp(_split_ties_pool, x)[1])


def test_max_first_gives_a_tie_to_the_first_candidate_only():
    a, b, c = jnp.asarray([1.0, 2.0, 3.0]), jnp.asarray([1.0, 5.0, 3.0]), jnp.asarray([0.0, 5.0, 3.0])
    grads = jax.grad(lambda a, b, c: (max_first(a, b, c) * jnp.asarray([1.0, 2.0, 4.0])).sum(),
                     argnums=(0, 1, 2))(a, b, c)
    np.testing.assert_array_equal(np.stack(grads), [[1, 0, 4], [0, 2, 0], [0, 0, 0]])


def test_audio_pair_pool_splits_a_tie():
    x = jnp.asarray([[[2.0], [2.0], [1.0], [3.0], [5.0]]])  # (1, 5, 1): pairs (2, 2), (1, 3); the 5 is dropped
    y, dx, g = _vjp(max_pool_1d_pairs, x)
    np.testing.assert_array_equal(y[0, :, 0], [2.0, 3.0])
    np.testing.assert_array_equal(dx[0, :, 0], [g[0, 0, 0] / 2, g[0, 0, 0] / 2, 0, g[0, 1, 0], 0])


def test_pools_keep_bfloat16():
    x = jnp.ones((1, 6, 6, 2), jnp.bfloat16)
    assert max_pool_3x3_s2_p1(x).dtype == jnp.bfloat16
    assert jax.grad(lambda v: max_pool_3x3_s2_p1(v).astype(jnp.float32).sum())(x).dtype == jnp.bfloat16


@pytest.mark.slow
@needs_torch
def test_pools_against_pytorch_with_ties():
    """The stem pool equals MaxPool2d(3, 2, 1) in value and gradient exactly (float64); the audio net's pool
    by 2 equals MaxPool1d(2, 2) in value, and in gradient wherever a window has no tie."""
    import torch
    import torch.nn.functional as F

    def torch_vjp(fn, x_nc, g):
        xt = torch.tensor(x_nc, requires_grad=True)
        y = fn(xt)
        y.backward(torch.tensor(g))
        return y.detach().numpy(), xt.grad.numpy()

    with jax.enable_x64(True):
        x = _tied((2, 9, 10, 4))  # (B, H, W, C)
        y, dx, g = _vjp(max_pool_3x3_s2_p1, jnp.asarray(x))
        y_t, dx_t = torch_vjp(lambda t: F.max_pool2d(t, 3, 2, 1), x.transpose(0, 3, 1, 2), g.transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(y, y_t.transpose(0, 2, 3, 1))
        np.testing.assert_array_equal(dx, dx_t.transpose(0, 2, 3, 1))

        x = _tied((2, 11, 4))  # (B, T, C), odd length: floor mode drops the last sample
        y, dx, g = _vjp(max_pool_1d_pairs, jnp.asarray(x))
        y_t, dx_t = torch_vjp(lambda t: F.max_pool1d(t, 2, 2), x.transpose(0, 2, 1), g.transpose(0, 2, 1))
        np.testing.assert_array_equal(y, y_t.transpose(0, 2, 1))
        tie = np.repeat(x[:, 0:10:2] == x[:, 1:10:2], 2, axis=1)  # (B, 10, C): both elements of a tied pair
        np.testing.assert_array_equal(dx[:, :10][~tie], dx_t.transpose(0, 2, 1)[:, :10][~tie])
        assert tie.any() and not np.array_equal(dx[:, :10][tie], dx_t.transpose(0, 2, 1)[:, :10][tie])
