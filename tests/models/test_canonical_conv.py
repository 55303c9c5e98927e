"""The canonical-gradient convolution: lax's values and gradients in every formulation (direct, strided input
gradients by polyphase, products of patches), the rules that pick one per pass, and a canonical kernel inside
loops."""
import contextlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from avjax.models import canonical_conv
from avjax.models.canonical_conv import conv_general_dilated

CASES = [  # lhs shape, kernel shape, strides, padding, lhs dilation, rhs dilation
    ((2, 9, 11, 3), (3, 3, 3, 5), (2, 2), ((1, 1), (1, 1)), None, None),      # ResNet's strided 3x3
    ((2, 10, 10, 4), (7, 7, 4, 6), (2, 2), ((3, 3), (3, 3)), None, None),      # ResNet's stem
    ((2, 9, 11, 3), (1, 1, 3, 5), (2, 2), ((0, 0), (0, 0)), None, None),      # downsample 1x1
    ((2, 33, 3), (3, 3, 8), (2,), ((1, 1),), None, None),                      # the audio net's Conv1d
    ((2, 10, 8, 3), (2, 2, 3, 4), (3, 3), ((1, 0), (0, 1)), None, None),      # kernel < stride: empty phases
    ((2, 9, 11, 3), (5, 3, 3, 4), (3, 2), ((2, 1), (0, 2)), None, None),      # uneven strides and padding
    ((2, 31, 2), (4, 2, 3), (3,), ((2, 1),), None, None),
    ((2, 9, 11, 3), (3, 3, 3, 5), (2, 2), ((1, 5), (0, 4)), None, None),      # high padding: phases cropped
    ((2, 9, 3), (2, 3, 4), (3,), ((0, 6),), None, None),
    ((2, 9, 11, 3), (3, 3, 3, 5), (1, 2), "SAME", (1, 1), (2, 1)),            # dilations: lax's own rule
    ((2, 9, 11, 3), (3, 2, 3, 5), (3, 1), ((2, 0), (1, 3)), (2, 1), (1, 2)),
    ((3, 2, 2, 4), (3, 3, 4, 5), (1, 1), ((1, 1), (1, 1)), None, None),      # ResNet18's last stage at 64 px
    ((3, 1, 1, 4), (3, 3, 4, 5), (1, 1), ((1, 1), (1, 1)), None, None),      # at 32 px: 8 of 9 taps read padding
    ((3, 2, 2, 4), (3, 3, 4, 5), (2, 2), ((1, 1), (1, 1)), None, None),      # strided onto a 1x1 map
    ((3, 2, 2, 4), (1, 1, 4, 5), (2, 2), ((0, 0), (0, 0)), None, None),      # its downsample
    ((3, 2, 4), (3, 4, 5), (2,), ((1, 1),), None, None),                       # the audio net's last layer
    ((2, 9, 11, 3), (3, 3, 3, 5), (2, 2), ((-1, 2), (0, -1)), None, None),    # negative padding crops
]


def _dn(ndim):
    return ("NHWC", "HWIO", "NHWC") if ndim == 4 else ("NWC", "WIO", "NWC")


@pytest.mark.slow
@pytest.mark.parametrize("form", [None, "direct", "taps"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[3]}")
def test_values_and_both_gradients_equal_lax_in_float64(case, form):
    """Every formulation (None: the rules' pick) is exact: lax's values and gradients to float64 rounding."""
    shape, kshape, strides, padding, lhs_dil, rhs_dil = case
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=shape), jnp.float64)
        w = jnp.asarray(rng.normal(size=kshape), jnp.float64)

        def loss(conv):
            return lambda x, w: jnp.sum(jnp.sin(conv(x, w, strides, padding, lhs_dil, rhs_dil, _dn(len(shape)))))

        def value_and_gradients(conv):  # one jitted program (traced here, inside the forced formulation)
            fn = loss(conv)
            return jax.jit(lambda x, w: (fn(x, w), jax.grad(fn, (0, 1))(x, w)))(x, w)

        with canonical_conv.forced(form) if form else contextlib.nullcontext():
            value, ours = value_and_gradients(conv_general_dilated)
        ref_value, ref = value_and_gradients(lax.conv_general_dilated)
        np.testing.assert_allclose(value, ref_value, rtol=1e-12)
        for a, b in zip(ours, ref):
            assert a.shape == b.shape and a.dtype == jnp.float64
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)


def _spec(strides, padding):
    dn = lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), _dn(4))
    return canonical_conv._Conv(strides, padding, (1, 1), (1, 1), dn, None)


def test_rules_pick_the_product_of_patches_on_small_maps_and_for_strided_input_gradients():
    same, strided = _spec((1, 1), ((1, 1), (1, 1))), _spec((2, 2), ((1, 1), (1, 1)))
    pick = canonical_conv.formulation
    for side in (1, 2):  # ResNet18's last stages on 32-64 px frames: every pass
        assert {pick(p, same, (64, side, side, 512), (3, 3, 512, 512), "cpu") for p in canonical_conv.PASSES} == {"taps"}
    # 7x7 and up (the paper's 224 px): the direct convolution, except a strided input gradient
    assert pick("forward", same, (8, 7, 7, 512), (3, 3, 512, 512), "cpu") == "direct"
    assert pick("input_gradient", same, (8, 7, 7, 512), (3, 3, 512, 512), "cpu") == "direct"
    assert pick("input_gradient", strided, (8, 56, 56, 64), (3, 3, 64, 128), "cpu") == "taps"
    assert pick("weight_gradient", strided, (8, 56, 56, 64), (3, 3, 64, 128), "cpu") == "direct"
    stem = _spec((2, 2), ((3, 3), (3, 3)))  # 7x7: the transposed patches would sum 49 shifted copies
    assert pick("input_gradient", stem, (8, 224, 224, 3), (7, 7, 3, 64), "cpu") == "direct"
    assert pick("weight_gradient", strided, (8, 56, 56, 64), (1, 1, 64, 128), "cpu") == "taps"
    # 1-D strided: a long map with many features stays direct; one input feature (the audio net's first
    # layer) or few output positions go to patches
    one_d = canonical_conv._Conv((2,), ((1, 1),), (1,), (1,), lax.conv_dimension_numbers(
        (1, 1, 1), (1, 1, 1), _dn(3)), None)
    assert pick("input_gradient", one_d, (8, 32768, 64), (3, 64, 64), "cpu") == "direct"
    assert pick("input_gradient", one_d, (8, 65535, 1), (3, 1, 64), "cpu") == "taps"
    assert pick("weight_gradient", one_d, (8, 65535, 1), (3, 1, 64), "cpu") == "taps"
    assert pick("input_gradient", one_d, (8, 32, 512), (3, 512, 512), "cpu") == "taps"
    # other backends keep the direct convolution, whatever the shape
    assert {pick(p, same, (64, 2, 2, 512), (3, 3, 512, 512), "gpu") for p in canonical_conv.PASSES} == {"direct"}
    with pytest.raises(ValueError, match="pass must be one of"):
        pick("backward", same, (1, 2, 2, 1), (3, 3, 1, 1), "cpu")
    with pytest.raises(ValueError, match="formulation must be"):
        with canonical_conv.forced("im2col"):
            pass


def _hlo_convolutions(fn, *args):
    return jax.jit(fn).lower(*args).compile().as_text().count("convolution(")


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the rules pick patches on XLA:CPU only")
def test_small_maps_compile_to_no_convolution_on_cpu():
    x, w = jnp.ones((4, 2, 2, 16), jnp.float32), jnp.ones((3, 3, 16, 16), jnp.float32)

    def conv(x, w):
        return jnp.sum(conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_dn(4)) ** 2)

    assert _hlo_convolutions(jax.value_and_grad(conv, (0, 1)), x, w) == 0
    with canonical_conv.forced("direct"):
        assert _hlo_convolutions(jax.value_and_grad(lambda x, w: conv(x, w) + 0.0, (0, 1)), x, w) == 3


def _loop_kernel_layouts(conv):
    """The kernel layouts of the convolutions XLA:CPU compiles for ten input-gradient steps in a fori_loop."""
    x = jnp.ones((2, 16, 16, 8), jnp.float32)
    w = jnp.ones((3, 3, 8, 16), jnp.float32)

    def step(_, x):
        g = jax.grad(lambda x: jnp.sum(conv(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_dn(4)) ** 2))(x)
        return x - 0.1 * jnp.sign(g)

    text = jax.jit(lambda x: lax.fori_loop(0, 10, step, x)).lower(x).compile().as_text()
    return set(re.findall(r"dim_labels=\w+_(\w+)->", text))


def test_input_gradient_in_a_loop_uses_the_canonical_kernel_layout():
    # lax's own transpose rule leaves a `01oi` kernel inside the while body, which XLA:CPU only
    # canonicalises at top level; ours is `01io` there too (the cause of the 1.8x loop slowdown).
    with canonical_conv.forced("direct"):
        assert _loop_kernel_layouts(conv_general_dilated) == {"01io"}
    if jax.default_backend() == "cpu":
        assert "01oi" in _loop_kernel_layouts(lax.conv_general_dilated), "XLA:CPU changed; the workaround may go"


@pytest.mark.slow
def test_nets_use_it():
    from avjax.models import AVClassifier
    module = AVClassifier(num_classes=3, width=0.125)
    image, audio = jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 4096))
    variables = jax.eval_shape(module.init, jax.random.key(0), image, audio)  # shapes only: nothing compiled
    with canonical_conv.forced("direct"):
        jaxpr = str(jax.make_jaxpr(lambda v, i, a: module.apply(v, i, a)[0])(variables, image, audio))
    assert jaxpr.count("conv_general_dilated") == 20 + 8  # ResNet18's 20 convolutions, the audio net's 8
    assert len(re.findall(r"custom_vjp_call\[\s*name=_canonical\b", jaxpr)) == 20 + 8


def test_strided_input_gradient_reads_no_inserted_zeros():
    x, w = jnp.ones((2, 16, 16, 8), jnp.float32), jnp.ones((7, 7, 8, 4), jnp.float32)

    def hlo(conv):
        f = jax.grad(lambda x: jnp.sum(conv(x, w, (2, 2), ((3, 3), (3, 3)), dimension_numbers=_dn(4)) ** 2))
        return jax.jit(f).lower(x).compile().as_text()

    for form in ("direct", "taps"):  # polyphase, or the transposed product of patches
        with canonical_conv.forced(form, passes=("input_gradient",)):
            assert "lhs_dilate" not in hlo(conv_general_dilated)
    assert "lhs_dilate" in hlo(lax.conv_general_dilated)  # lax's rule: g with zeros inserted between elements
