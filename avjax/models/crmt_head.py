"""CRMT's last layer (Yang et al., ICLR 2024; avjax.defenses.crmt): logits per modality through row-normalised
weights, fused with a learned weight per class and modality.

    o_v = f_v W_v^T,  o_a = f_a W_a^T,  logits = a_v * o_v + a_a * o_a + b

W = [W_v | W_a] is one nn.Linear over the concatenated features [f_v; f_a] (visual first) whose per-modality
blocks have every row centred and scaled to unit norm (the released `orthogonal_linear` with `OWNNorm(norm_groups=
classes)`), a_v and a_a start at 0.1 per class, b is the linear layer's bias.
"""
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from avjax.defenses.crmt import row_normalise
from avjax.models.layers import compute_dtype, torch_bias_init, torch_kernel_init

SCALE_INIT = 0.1   # the released a_0, a_1


class CRMTHead(nn.Module):
    """(f_v, f_a) -> (logits, (o_v, o_a))."""

    num_classes: int
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, f_v, f_a):
        d_v, d_a = f_v.shape[-1], f_a.shape[-1]
        kernel = self.param("kernel", torch_kernel_init(), (d_v + d_a, self.num_classes), self.param_dtype)
        bias = self.param("bias", torch_bias_init(d_v + d_a), (self.num_classes,), self.param_dtype)
        scale_v = self.param("scale_visual", nn.initializers.constant(SCALE_INIT), (self.num_classes,),
                             self.param_dtype)
        scale_a = self.param("scale_audio", nn.initializers.constant(SCALE_INIT), (self.num_classes,),
                             self.param_dtype)
        dtype = compute_dtype(self.dtype, f_v, kernel)
        w_v = row_normalise(kernel[:d_v].T.astype(jnp.float32)).astype(dtype)
        w_a = row_normalise(kernel[d_v:].T.astype(jnp.float32)).astype(dtype)
        o_v = jnp.dot(f_v.astype(dtype), w_v.T)
        o_a = jnp.dot(f_a.astype(dtype), w_a.T)
        logits = scale_v.astype(dtype) * o_v + scale_a.astype(dtype) * o_a + bias.astype(dtype)
        return logits, (o_v, o_a)
