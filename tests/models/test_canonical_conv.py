"""The canonical-gradient convolution: lax's values and gradients (strided ones by polyphase), and a canonical
kernel inside loops."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

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
]


def _dn(ndim):
    return ("NHWC", "HWIO", "NHWC") if ndim == 4 else ("NWC", "WIO", "NWC")


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[3]}")
def test_values_and_both_gradients_equal_lax(case):
    shape, kshape, strides, padding, lhs_dil, rhs_dil = case
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=kshape), jnp.float32)

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.sin(conv(x, w, strides, padding, lhs_dil, rhs_dil, _dn(len(shape)))))

    np.testing.assert_allclose(loss(conv_general_dilated)(x, w), loss(lax.conv_general_dilated)(x, w), rtol=1e-6)
    ours = jax.grad(loss(conv_general_dilated), (0, 1))(x, w)
    ref = jax.grad(loss(lax.conv_general_dilated), (0, 1))(x, w)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


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
    assert _loop_kernel_layouts(conv_general_dilated) == {"01io"}
    if jax.default_backend() == "cpu":
        assert "01oi" in _loop_kernel_layouts(lax.conv_general_dilated), "XLA:CPU changed; the workaround may go"


def test_nets_use_it():
    from avjax.models import AVClassifier
    module = AVClassifier(num_classes=3, width=0.125)
    image, audio = jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 4096))
    variables = module.init(jax.random.PRNGKey(0), image, audio)
    jaxpr = str(jax.make_jaxpr(lambda i, a: module.apply(variables, i, a)[0])(image, audio))
    assert jaxpr.count("conv_general_dilated") == 20 + 8  # ResNet18's 20 convolutions, the audio net's 8
    assert len(re.findall(r"custom_vjp_call\[\s*name=_canonical\b", jaxpr)) == 20 + 8


def test_strided_input_gradient_reads_no_inserted_zeros():
    x, w = jnp.ones((2, 16, 16, 8), jnp.float32), jnp.ones((7, 7, 8, 4), jnp.float32)

    def hlo(conv):
        f = jax.grad(lambda x: jnp.sum(conv(x, w, (2, 2), ((3, 3), (3, 3)), dimension_numbers=_dn(4)) ** 2))
        return jax.jit(f).lower(x).compile().as_text()

    assert "lhs_dilate" not in hlo(conv_general_dilated)
    assert "lhs_dilate" in hlo(lax.conv_general_dilated)  # lax's rule: g with zeros inserted between elements
