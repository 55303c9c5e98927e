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
stride-2 convolutions, 1/2 for the audio net's (docs/benchmarks.md). Values and both gradients are those of
`lax.conv_general_dilated` up to float rounding (tests/models/test_canonical_conv.py). It is used on every
backend: on an H200 it was as fast as JAX's own rule for the train step and 13 % faster for PGD-10
(`benchmarks/accelerator.py`, docs/benchmarks.md).

On XLA:CPU a second formulation is chosen per pass where it is faster: the convolution as one matrix product
of its patches ("taps": the kernel positions as static strided slices of the padded input, concatenated along
features, times the kernel as a (taps * in, out) matrix). Its input gradient is that product's transpose
followed by the slices' transpose (pads and adds), and its weight gradient the patches' transpose times the
output gradient: matrix products and data movement only. XLA:CPU's direct convolution is pathological on maps
of one or two positions a side (tens of times slower than the same product of patches for ResNet18's last
stage), which is where ResNet18's last stages run on 32-64 pixel frames and where the audio net ends on short
waveforms; and the strided input gradient is faster as patches at most sizes.
`formulation` holds the rules, `benchmarks/conv_formulations.py` the measurements behind them, and
`benchmarks/xla_small_map.py` a stand-alone reproducer of the slowdown. Kernel positions that read only
padding (all but the centre of a 3x3 kernel on a 1x1 map) are left out of the product: they add zeros.

Grouped convolutions and `preferred_element_type` (unused by avjax's nets) go to `lax` unchanged.
"""
import contextlib
import dataclasses
import functools
import itertools
import math
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


SMALL_MAP = 2  # a map is small when no spatial side exceeds this: there the direct convolution is pathological
FEW_POSITIONS = 64  # a 1-D strided input gradient is faster as patches up to this many output positions
SMALL_KERNEL = 9  # strided input gradients as patches only for kernels of at most this many positions
PASSES = ("forward", "input_gradient", "weight_gradient")
_forced: dict = {}


@contextlib.contextmanager
def forced(name: str, passes=PASSES):
    """Within the block, newly traced convolutions use formulation `name` ('direct' or 'taps') for `passes`,
    whatever the rules say (for benchmarks and tests; programs traced before or after are unaffected)."""
    if name not in ("direct", "taps"):
        raise ValueError(f"formulation must be 'direct' or 'taps', got {name!r}")
    saved = dict(_forced)
    _forced.update({p: name for p in passes})
    try:
        yield
    finally:
        _forced.clear()
        _forced.update(saved)


def formulation(pass_: str, conv: _Conv, lhs_shape, rhs_shape, platform: str | None = None) -> str:
    """'taps' or 'direct' for one pass of a channels-last convolution without dilation, by the rules measured on
    XLA:CPU (benchmarks/conv_formulations.py); other backends keep the direct convolution.

    - every pass on small maps (no input side > SMALL_MAP): the direct convolution is pathological there;
    - the input gradient of a strided convolution with at most SMALL_KERNEL kernel positions (3x3, 1x1, the
      audio net's 3) in 2-D, from one input feature, or onto few output positions (else a polyphase
      convolution of the output gradient, itself a convolution on a small map); larger kernels (ResNet18's
      7x7 stem) sum too many shifted copies of the input and stay direct;
    - the weight gradient of a 1x1 kernel (one strided slice and one product) or of one input feature (the
      audio net's first layer: a convolution with a single input feature is slow).
    """
    if pass_ not in PASSES:
        raise ValueError(f"pass must be one of {PASSES}, got {pass_!r}")
    if pass_ in _forced:
        return _forced[pass_]
    if (platform or jax.default_backend()) != "cpu":
        return "direct"
    nd = len(lhs_shape) - 2
    spatial, kernel, n_in = lhs_shape[1:-1], rhs_shape[:nd], lhs_shape[-1]
    if all(n <= SMALL_MAP for n in spatial):
        return "taps"
    if pass_ == "input_gradient" and any(s > 1 for s in conv.window_strides) and math.prod(kernel) <= SMALL_KERNEL:
        few = math.prod(_out_sizes(conv, spatial, kernel)) <= FEW_POSITIONS
        return "taps" if nd >= 2 or n_in == 1 or few else "direct"
    if pass_ == "weight_gradient" and (all(k == 1 for k in kernel) or n_in == 1):
        return "taps"
    return "direct"


def _out_sizes(conv: _Conv, spatial, kernel):
    return [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(spatial, kernel, conv.window_strides, conv.padding)]


def _kept_box(conv: _Conv, spatial, kernel):
    """Per spatial dimension, the range [lo, hi) of kernel positions that read at least one input element (a
    contiguous range); positions outside it read only padding and add zeros. None when a dimension keeps none
    (an output made of padding alone: left to `lax`)."""
    out = _out_sizes(conv, spatial, kernel)
    box = []
    for n, k, o, s, (lo, _) in zip(spatial, kernel, out, conv.window_strides, conv.padding):
        kept = [t for t in range(k) if any(0 <= t + q * s - lo < n for q in range(o))]
        if not kept:
            return None
        box.append((kept[0], kept[-1] + 1))
    return box


def _patches(conv: _Conv, lhs, box, kernel):
    """(B, *out, taps * in): for each kept kernel position (row-major over `box`), the input it meets at every
    output position."""
    spatial, strides = lhs.shape[1:-1], conv.window_strides
    out = _out_sizes(conv, spatial, kernel)
    padded = lax.pad(lhs, jnp.zeros((), lhs.dtype), [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in conv.padding] + [(0, 0, 0)])
    cols = [lax.slice(padded, (0,) + t + (0,),
                      (lhs.shape[0],) + tuple(i + (o - 1) * s + 1 for i, o, s in zip(t, out, strides)) + (lhs.shape[-1],),
                      (1,) + tuple(strides) + (1,))
            for t in itertools.product(*(range(lo, hi) for lo, hi in box))]
    return cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)


def _taps_matrix(rhs, box):
    """The kernel's kept positions as one (taps * in, out) matrix, in the order of `_patches`: the kernel's own
    row-major layout, so all positions kept is a free reshape and a pruned kernel one slice."""
    return rhs[tuple(slice(lo, hi) for lo, hi in box)].reshape(-1, rhs.shape[-1])


def _rows(x):
    return x.reshape(-1, x.shape[-1])


def _taps_forward(conv: _Conv, lhs, rhs):
    nd = lhs.ndim - 2
    box = _kept_box(conv, lhs.shape[1:-1], rhs.shape[:nd])
    patches = _patches(conv, lhs, box, rhs.shape[:nd])
    out = jnp.dot(_rows(patches), _taps_matrix(rhs, box).astype(patches.dtype), precision=conv.precision)
    return out.reshape(patches.shape[:-1] + (rhs.shape[-1],))


def _taps_input_gradient(conv: _Conv, g, lhs, rhs):
    nd = lhs.ndim - 2
    box = _kept_box(conv, lhs.shape[1:-1], rhs.shape[:nd])
    g_patches = jnp.dot(_rows(g), _taps_matrix(rhs, box).astype(g.dtype).T, precision=conv.precision)
    g_patches = g_patches.reshape(g.shape[:-1] + (-1,))
    transpose = jax.linear_transpose(lambda x: _patches(conv, x, box, rhs.shape[:nd]),
                                     jax.ShapeDtypeStruct(lhs.shape, g.dtype))
    return transpose(g_patches)[0]


def _taps_weight_gradient(conv: _Conv, g, lhs, rhs):
    nd = lhs.ndim - 2
    kernel = rhs.shape[:nd]
    box = _kept_box(conv, lhs.shape[1:-1], kernel)
    patches = _patches(conv, lhs.astype(g.dtype), box, kernel)
    grad = jnp.dot(_rows(patches).T, _rows(g), precision=conv.precision)
    grad = grad.reshape(tuple(hi - lo for lo, hi in box) + rhs.shape[nd:])
    # positions that read only padding get exactly zero
    return jnp.pad(grad, [(lo, k - hi) for (lo, hi), k in zip(box, kernel)] + [(0, 0), (0, 0)])


def _taps_supported(conv: _Conv, ndim: int) -> bool:
    return set(conv.lhs_dilation) == set(conv.rhs_dilation) == {1} and _channels_last(conv, ndim)


def _uses_taps(pass_, conv, lhs, rhs) -> bool:
    return (_taps_supported(conv, lhs.ndim) and formulation(pass_, conv, lhs.shape, rhs.shape) == "taps"
            and _kept_box(conv, lhs.shape[1:-1], rhs.shape[:lhs.ndim - 2]) is not None)


def _forward(conv: _Conv, lhs, rhs):
    return _taps_forward(conv, lhs, rhs) if _uses_taps("forward", conv, lhs, rhs) else conv(lhs, rhs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _canonical(conv: _Conv, lhs, rhs):
    return _forward(conv, lhs, rhs)


def _canonical_fwd(conv, lhs, rhs):
    return _forward(conv, lhs, rhs), (lhs, rhs)


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
    """d loss / d lhs: the transposed product of patches where `formulation` picks it; else a canonical
    convolution: polyphase for strided channels-last convolutions, else the reversed kernel with its output and
    input feature axes swapped in the data (the transposed convolution then reads it with the forward's own
    kernel layout)."""
    if _uses_taps("input_gradient", conv, lhs, rhs):
        return _taps_input_gradient(conv, g, lhs, rhs)
    if (any(s > 1 for s in conv.window_strides) and set(conv.lhs_dilation) == set(conv.rhs_dilation) == {1}
            and min(min(p) for p in conv.padding) >= 0 and _channels_last(conv, lhs.ndim)):
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
    return _input_gradient(conv, g, lhs, rhs).astype(lhs.dtype), _weight_gradient(conv, g, lhs, rhs).astype(rhs.dtype)


def _weight_gradient(conv: _Conv, g, lhs, rhs):
    """d loss / d rhs: the patches' transpose times g where `formulation` picks it, else lax's own rule."""
    if _uses_taps("weight_gradient", conv, lhs, rhs):
        return _taps_weight_gradient(conv, g, lhs, rhs)
    _, rhs_vjp = jax.vjp(lambda r: conv(lhs, r), rhs)
    return rhs_vjp(g)[0]


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
