"""A convolution whose input gradient is a canonical convolution, fast on XLA:CPU inside loops too.

JAX differentiates a convolution w.r.t. its input as a convolution of the output gradient with the
reversed kernel, whose input and output feature dimensions are swapped in the dimension numbers (a
`01oi` kernel). XLA:CPU rewrites such non-canonical convolutions into Eigen's canonical form only in
the entry computation (its ConvCanonicalization pass visits top-level convolutions); inside a `while`
body (`fori_loop`, `scan`) they stay on a generic path, which made an attack step in a loop about 1.8x
slower than the same step unrolled. Here the input gradient swaps the two kernel axes in the data, so
the convolution is canonical wherever it runs. The input gradient of a strided convolution is computed
by polyphase decomposition (one stride-1 convolution, then depth-to-space) instead of convolving the
output gradient with zeros inserted between its elements: 3/4 fewer multiply-adds for the ResNet's
stride-2 convolutions, 1/2 for the audio net's (README, "Benchmarks"). Values and both gradients are those of
`lax.conv_general_dilated` up to float rounding (tests/models/test_canonical_conv.py). It is used on every
backend: on an H200 it was as fast as JAX's own rule for the train step and 13 % faster for PGD-10
(`benchmarks/accelerator.py`, README "On an accelerator").

Grouped convolutions and `preferred_element_type` (unused by avjax's nets) go to `lax` unchanged.
"""
import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


@dataclasses.dataclass(frozen=True)
class _Conv:
    """The static arguments of one convolution (hashable: a custom_vjp non-differentiable argument)."""
    window_strides: tuple
    padding: tuple
    lhs_dilation: tuple
    rhs_dilation: tuple
    dimension_numbers: lax.ConvDimensionNumbers
    precision: Any

    def __call__(self, lhs, rhs):
        return lax.conv_general_dilated(
            lhs, rhs, self.window_strides, self.padding, self.lhs_dilation, self.rhs_dilation,
            self.dimension_numbers, precision=self.precision)


def _dilate(sizes, dilation):
    return [0 if d == 0 else 1 + r * (d - 1) for d, r in zip(sizes, dilation)]


def _input_gradient_padding(conv: _Conv, lhs_sizes, rhs_sizes, out_sizes):
    """The padding of the input-gradient convolution (as `jax.lax`'s own transpose rule computes it)."""
    lhs_d = _dilate(lhs_sizes, conv.lhs_dilation)
    rhs_d = _dilate(rhs_sizes, conv.rhs_dilation)
    out_d = _dilate(out_sizes, conv.window_strides)
    before = [k - lo - 1 for k, (lo, _) in zip(rhs_d, conv.padding)]
    after = [i + k - 1 - o - b for i, k, o, b in zip(lhs_d, rhs_d, out_d, before)]
    return tuple(zip(before, after))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _canonical(conv: _Conv, lhs, rhs):
    return conv(lhs, rhs)


def _canonical_fwd(conv, lhs, rhs):
    return conv(lhs, rhs), (lhs, rhs)


def _channels_last(conv: _Conv, ndim: int) -> bool:
    """Whether the dimension numbers are flax's: (batch, spatial..., feature) and (spatial..., in, out)."""
    spatial = tuple(range(1, ndim - 1))
    lhs_spec, rhs_spec, out_spec = conv.dimension_numbers
    return (tuple(lhs_spec) == tuple(out_spec) == (0, ndim - 1) + spatial
            and tuple(rhs_spec) == (ndim - 1, ndim - 2) + tuple(range(ndim - 2)))


def _polyphase_input_gradient(conv: _Conv, g, rhs, lhs_shape):
    """The input gradient of a strided convolution as one stride-1 convolution and a depth-to-space.

    With stride s, input element n = s*q + t - pad_lo (phase t < s) receives sum_j g[q - j] w[s*j + t]:
    for each phase a stride-1 correlation of g with the reversed sub-kernel w[t::s]. The phases are
    stacked as output features of one convolution. `lax`'s rule instead convolves g dilated with s - 1
    zeros between elements, so (s^d - 1)/s^d of its multiply-adds read zeros (3/4 for ResNet's 2x2
    strides, 1/2 for the audio net's)."""
    nd = g.ndim - 2
    kernel_sizes, strides = rhs.shape[:nd], conv.window_strides
    n_in, n_out = rhs.shape[nd], rhs.shape[nd + 1]
    taps = [-(-k // s) for k, s in zip(kernel_sizes, strides)]  # J: sub-kernel length per dimension
    w = jnp.pad(rhs, [(0, j * s - k) for j, s, k in zip(taps, strides, kernel_sizes)] + [(0, 0), (0, 0)])
    w = w.reshape(sum(([j, s] for j, s in zip(taps, strides)), []) + [n_in, n_out])  # [j0, t0, j1, t1, .., i, o]
    w = lax.rev(w, tuple(range(0, 2 * nd, 2)))
    w = w.transpose(tuple(range(0, 2 * nd, 2)) + (2 * nd + 1,) + tuple(range(1, 2 * nd, 2)) + (2 * nd,))
    w = w.reshape(tuple(taps) + (n_out, int(np.prod(strides)) * n_in)).astype(g.dtype)  # [j.., o, (t.., i)]
    lhs_sizes, pad_lo = lhs_shape[1:-1], [lo for lo, _ in conv.padding]
    phases = [-(-(n + lo) // s) for n, lo, s in zip(lhs_sizes, pad_lo, strides)]  # Q: outputs per phase
    out = lax.conv_general_dilated(
        g, w, (1,) * nd, [(j - 1, q - o) for j, q, o in zip(taps, phases, g.shape[1:-1])],
        dimension_numbers=conv.dimension_numbers, precision=conv.precision)
    out = out.reshape((g.shape[0],) + tuple(phases) + tuple(strides) + (n_in,))
    out = out.transpose((0,) + sum(((1 + d, 1 + nd + d) for d in range(nd)), ()) + (2 * nd + 1,))
    out = out.reshape((g.shape[0],) + tuple(q * s for q, s in zip(phases, strides)) + (n_in,))
    return out[(slice(None),) + tuple(slice(lo, lo + n) for lo, n in zip(pad_lo, lhs_sizes))]


def _input_gradient(conv: _Conv, g, lhs, rhs):
    """d loss / d lhs, always a canonical convolution: polyphase for strided channels-last convolutions,
    else the reversed kernel with its output and input feature axes swapped in the data (the transposed
    convolution then reads it with the forward's own kernel layout)."""
    if (any(s > 1 for s in conv.window_strides) and set(conv.lhs_dilation) == set(conv.rhs_dilation) == {1}
            and _channels_last(conv, lhs.ndim)):
        return _polyphase_input_gradient(conv, g, rhs, lhs.shape)
    lhs_spec, rhs_spec, out_spec = conv.dimension_numbers
    kernel = jnp.swapaxes(lax.rev(rhs, rhs_spec[2:]), rhs_spec[0], rhs_spec[1]).astype(g.dtype)
    padding = _input_gradient_padding(conv, np.take(lhs.shape, lhs_spec[2:]), np.take(rhs.shape, rhs_spec[2:]),
                                      np.take(g.shape, out_spec[2:]))
    return lax.conv_general_dilated(
        g, kernel, window_strides=conv.lhs_dilation, padding=padding, lhs_dilation=conv.window_strides,
        rhs_dilation=conv.rhs_dilation, dimension_numbers=lax.ConvDimensionNumbers(out_spec, rhs_spec, lhs_spec),
        precision=conv.precision)


def _canonical_bwd(conv, residuals, g):
    lhs, rhs = residuals
    _, rhs_vjp = jax.vjp(lambda r: conv(lhs, r), rhs)  # the weight gradient: lax's own rule
    return _input_gradient(conv, g, lhs, rhs).astype(lhs.dtype), rhs_vjp(g)[0]


_canonical.defvjp(_canonical_fwd, _canonical_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None):
    """`lax.conv_general_dilated` with a canonical input gradient (the `conv_general_dilated` of nn.Conv)."""
    if feature_group_count != 1 or batch_group_count != 1 or preferred_element_type is not None:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, batch_group_count, precision,
                                        preferred_element_type)
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    spatial = lhs.ndim - 2
    lhs_dilation = tuple(lhs_dilation or (1,) * spatial)
    rhs_dilation = tuple(rhs_dilation or (1,) * spatial)
    if isinstance(padding, str):
        kernel = _dilate(np.take(rhs.shape, dn.rhs_spec[2:]), rhs_dilation)
        padding = lax.padtype_to_pads(np.take(lhs.shape, dn.lhs_spec[2:]), kernel, window_strides, padding)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    conv = _Conv(tuple(window_strides), padding, lhs_dilation, rhs_dilation, dn,
                 precision if not isinstance(precision, list) else tuple(precision))
    return _canonical(conv, lhs, rhs)
