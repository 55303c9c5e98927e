"""A convolution whose input gradient is a canonical convolution, fast on XLA:CPU inside loops too.

JAX differentiates a convolution w.r.t. its input as a convolution of the output gradient with the
reversed kernel, whose input and output feature dimensions are swapped in the dimension numbers (a
`01oi` kernel). XLA:CPU rewrites such non-canonical convolutions into Eigen's canonical form only in
the entry computation (its ConvCanonicalization pass visits top-level convolutions); inside a `while`
body (`fori_loop`, `scan`) they stay on a generic path, which made an attack step in a loop about 1.8x
slower than the same step unrolled. Here the input gradient swaps the two kernel axes in the data, so
the convolution is canonical wherever it runs. Values and both gradients are those of
`lax.conv_general_dilated` (tests/models/test_canonical_conv.py).

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


def _canonical_bwd(conv, residuals, g):
    lhs, rhs = residuals
    lhs_spec, rhs_spec, out_spec = conv.dimension_numbers
    # The reversed kernel with its output and input feature axes swapped in the data: the transposed
    # convolution then reads it with the forward's own (canonical) kernel layout.
    kernel = jnp.swapaxes(lax.rev(rhs, rhs_spec[2:]), rhs_spec[0], rhs_spec[1]).astype(g.dtype)
    padding = _input_gradient_padding(conv, np.take(lhs.shape, lhs_spec[2:]), np.take(rhs.shape, rhs_spec[2:]),
                                      np.take(g.shape, out_spec[2:]))
    d_lhs = lax.conv_general_dilated(
        g, kernel, window_strides=conv.lhs_dilation, padding=padding, lhs_dilation=conv.window_strides,
        rhs_dilation=conv.rhs_dilation, dimension_numbers=lax.ConvDimensionNumbers(out_spec, rhs_spec, lhs_spec),
        precision=conv.precision).astype(lhs.dtype)
    _, rhs_vjp = jax.vjp(lambda r: conv(lhs, r), rhs)
    return d_lhs, rhs_vjp(g)[0]


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
