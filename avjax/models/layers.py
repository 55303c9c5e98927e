"""Layers with PyTorch semantics: BatchNorm statistics, default initialisers, pooling.

The original networks are PyTorch modules; matching their numerics (including how BatchNorm updates
its running variance) is what lets ported weights and avjax-trained weights mean the same thing.
"""
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

Dtype = Any


def torch_kernel_init():
    """PyTorch's default Conv/Linear weight init: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in))."""
    return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int):
    """PyTorch's default Conv/Linear bias init: U(+-1/sqrt(fan_in))."""
    bound = 1.0 / max(fan_in, 1) ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


BASE_CHANNELS = (64, 128, 256, 512)  # the four stages of both ResNet18 and the audio net


def scaled_channels(width: float) -> tuple[int, ...]:
    """Channels of each stage for a width multiplier (1.0 is the paper's networks)."""
    return tuple(max(1, int(round(c * width))) for c in BASE_CHANNELS)


def compute_dtype(dtype: Dtype | None, *arrays) -> Dtype:
    """The dtype a layer computes in: the configured one, else the promotion of its inputs."""
    return dtype if dtype is not None else jnp.result_type(*arrays)


class BatchNorm(nn.Module):
    """BatchNorm over the last axis with PyTorch's semantics.

    Normalises with the biased batch variance and updates running statistics as PyTorch does
    (momentum 0.1 on the *new* value, running variance from the *unbiased* batch variance), so a
    model trained here and one trained by the original code keep statistics that mean the same.
    Statistics are computed in at least float32 even when the layer computes in bfloat16.
    """

    momentum: float = 0.1
    epsilon: float = 1e-5
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (features,), self.param_dtype)
        running_mean = self.variable(
            "batch_stats", "mean", lambda: jnp.zeros((features,), self.param_dtype))
        running_var = self.variable(
            "batch_stats", "var", lambda: jnp.ones((features,), self.param_dtype))
        dtype = compute_dtype(self.dtype, x, scale)
        stats_dtype = jnp.promote_types(dtype, jnp.float32)
        if train:
            xs = x.astype(stats_dtype)
            axes = tuple(range(x.ndim - 1))
            mean = xs.mean(axes)
            var = jnp.square(xs - mean).mean(axes)
            if not self.is_initializing():
                n = x.size // features
                unbiased = var * (n / max(n - 1, 1))
                m = self.momentum
                running_mean.value = ((1 - m) * running_mean.value + m * mean).astype(
                    running_mean.value.dtype)
                running_var.value = ((1 - m) * running_var.value + m * unbiased).astype(
                    running_var.value.dtype)
        else:
            mean = running_mean.value.astype(stats_dtype)
            var = running_var.value.astype(stats_dtype)
        inv = jax.lax.rsqrt(var + self.epsilon) * scale.astype(stats_dtype)
        y = (x.astype(stats_dtype) - mean) * inv + bias.astype(stats_dtype)
        return y.astype(dtype)


class TorchDense(nn.Module):
    """nn.Linear with PyTorch default initialisation (or a given kernel init)."""

    features: int
    kernel_init: Any = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        fan_in = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init or torch_kernel_init(),
                            (fan_in, self.features), self.param_dtype)
        bias = self.param("bias", torch_bias_init(fan_in), (self.features,), self.param_dtype)
        dtype = compute_dtype(self.dtype, x, kernel)
        return jnp.dot(x.astype(dtype), kernel.astype(dtype)) + bias.astype(dtype)


@jax.custom_vjp
def max_first(*candidates):
    """Elementwise max of equally shaped arrays whose gradient goes to the FIRST candidate holding it.

    PyTorch's max pooling sends a window's gradient to one element, the first maximum in scan order,
    and so does XLA's select-and-scatter; `jnp.maximum` would split it evenly between tied elements.
    ResNet18's stem pool uses it, so its gradient stays that of `nn.max_pool` (XLA's select-and-scatter,
    also the first maximum) while costing a quarter as much.
    """
    out = candidates[0]
    for c in candidates[1:]:
        out = jnp.maximum(out, c)
    return out


def _max_first_fwd(*candidates):
    return max_first(*candidates), candidates


def _max_first_bwd(candidates, g):
    out = max_first(*candidates)
    unclaimed = jnp.ones(g.shape, bool)
    grads = []
    for c in candidates:
        chosen = unclaimed & (c == out)
        grads.append(jnp.where(chosen, g, jnp.zeros_like(g)))
        unclaimed = unclaimed & ~chosen
    return tuple(grads)


max_first.defvjp(_max_first_fwd, _max_first_bwd)


def max_pool_1d_pairs(x):
    """MaxPool1d(kernel 2, stride 2) over axis 1 (floor mode): a max over two strided slices.

    Written with slices rather than reduce_window: cheaper forward and backward on XLA:CPU. A tie's
    gradient is split evenly between the two elements (PyTorch gives it to the first): kept on purpose,
    see docs/method.md, "Max pools and ties".
    """
    n = x.shape[1] // 2
    return jnp.maximum(x[:, 0:2 * n:2], x[:, 1:2 * n:2])


def max_pool_3x3_s2_p1(x):
    """MaxPool2d(3, stride 2, padding 1) over (H, W) with -inf padding, as torchvision's stem.

    The nine window positions are strided slices of the padded input, combined by `max_first` in
    PyTorch's scan order (rows, then columns): values and gradients those of `nn.max_pool` (XLA's
    select-and-scatter), at a fraction of the cost of XLA:CPU's select-and-scatter gradient
    (docs/benchmarks.md).
    """
    if x.ndim != 4:
        raise ValueError(f"max_pool_3x3_s2_p1 expects (batch, H, W, C), got shape {x.shape}")
    h, w = (x.shape[1] + 1) // 2, (x.shape[2] + 1) // 2  # floor((n + 2 - 3) / 2) + 1
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    windows = [padded[:, i:i + 2 * h - 1:2, j:j + 2 * w - 1:2] for i in range(3) for j in range(3)]
    return max_first(*windows)
