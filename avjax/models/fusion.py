"""The five audio-visual fusion heads of the paper's appendix (A.4), behind one interface.

Every head maps (f_v, f_a), each (B, D), to a fused feature; `output_dim(D)` says its width.
Concatenations put the visual feature first, as the released classifier does (`cat(feat_img,
feat_sound)`), so ported original weights line up.
"""
from typing import Any, Callable

import jax.numpy as jnp
from flax import linen as nn

from avjax.models.layers import TorchDense


class Sum(nn.Module):
    """f_av = f_a + f_v."""

    dtype: Any = None
    param_dtype: Any = jnp.float32

    @staticmethod
    def output_dim(d: int) -> int:
        return d

    def __call__(self, f_v, f_a):
        return f_v + f_a


class Concat(nn.Module):
    """f_av = [f_v; f_a] (visual first, as the released code)."""

    dtype: Any = None
    param_dtype: Any = jnp.float32

    @staticmethod
    def output_dim(d: int) -> int:
        return 2 * d

    def __call__(self, f_v, f_a):
        return jnp.concatenate([f_v, f_a], axis=-1)


class FiLM(nn.Module):
    """f_av = alpha(f_a) * f_v + beta(f_a), alpha a fully connected layer, beta the identity."""

    dtype: Any = None
    param_dtype: Any = jnp.float32

    @staticmethod
    def output_dim(d: int) -> int:
        return d

    @nn.compact
    def __call__(self, f_v, f_a):
        alpha = TorchDense(f_a.shape[-1], dtype=self.dtype, param_dtype=self.param_dtype,
                           name="alpha")(f_a)
        return alpha * f_v + f_a


class GatedSum(nn.Module):
    """f_av = sigmoid(f_a) * f_v + sigmoid(f_v) * f_a (gates without learned weights)."""

    dtype: Any = None
    param_dtype: Any = jnp.float32

    @staticmethod
    def output_dim(d: int) -> int:
        return d

    def __call__(self, f_v, f_a):
        return nn.sigmoid(f_a) * f_v + nn.sigmoid(f_v) * f_a


class GatedConcat(nn.Module):
    """f_av = [sigmoid(f_a) * f_v; sigmoid(f_v) * f_a]."""

    dtype: Any = None
    param_dtype: Any = jnp.float32

    @staticmethod
    def output_dim(d: int) -> int:
        return 2 * d

    def __call__(self, f_v, f_a):
        return jnp.concatenate([nn.sigmoid(f_a) * f_v, nn.sigmoid(f_v) * f_a], axis=-1)


FUSIONS: dict[str, Callable[..., nn.Module]] = {
    "sum": Sum,
    "concat": Concat,
    "film": FiLM,
    "gated_sum": GatedSum,
    "gated_concat": GatedConcat,
}


def get_fusion(name: str) -> Callable[..., nn.Module]:
    try:
        return FUSIONS[name]
    except KeyError:
        raise ValueError(f"unknown fusion {name!r}; choose one of {sorted(FUSIONS)}") from None
