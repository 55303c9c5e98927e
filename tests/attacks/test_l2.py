"""L2 PGD: on a linear model it fools exactly the examples whose closed-form minimal whitened L2 distance to the
decision boundary, |margin| / sqrt(scale_v^2 |w_v|^2 + scale_a^2 |w_a|^2), is below the radius; every iterate stays
in the ball and in range; a modality with scale 0 is returned bit-identical; results do not depend on batch-mates."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax.attacks.l2_attack import pgd_l2

B, DIMS, LENGTH = 24, (4, 4, 3), 32


def _linear(seed=0):
    """A two-class linear model on inputs far enough from their bounds that the boundary is reached unclamped."""
    k = jax.random.split(jax.random.key(seed), 4)
    w_v = jax.random.normal(k[0], (int(np.prod(DIMS)),))
    w_a = jax.random.normal(k[1], (LENGTH,))
    image = jax.random.uniform(k[2], (B,) + DIMS, minval=0.3, maxval=0.7)
    audio = jax.random.uniform(k[3], (B, LENGTH), minval=-0.3, maxval=0.3)
    bias = -float(jnp.median(image.reshape(B, -1) @ w_v + audio @ w_a))

    def logits_fn(img, aud):
        g = img.reshape(img.shape[0], -1) @ w_v + aud @ w_a + bias
        return jnp.stack([jnp.zeros_like(g), g], -1)

    margin = np.asarray(logits_fn(image, audio)[:, 1])
    label = jnp.asarray(margin > 0, jnp.int32)
    return logits_fn, image, audio, label, np.abs(margin), float(jnp.linalg.norm(w_v)), float(jnp.linalg.norm(w_a))


def _ball_norm(adv_v, adv_a, image, audio, s_v, s_a):
    parts = []
    if s_v > 0:
        parts.append(np.square(np.asarray(adv_v - image) / s_v).reshape(B, -1).sum(1))
    if s_a > 0:
        parts.append(np.square(np.asarray(adv_a - audio) / s_a).reshape(B, -1).sum(1))
    return np.sqrt(sum(parts))


@pytest.mark.parametrize("s_v,s_a", [(1.0, 0.0), (0.0, 1.0), (0.25, 0.05)])
def test_a_linear_model_is_fooled_exactly_beyond_its_boundary_distance(s_v, s_a):
    logits_fn, image, audio, label, margin, norm_v, norm_a = _linear()
    exact = margin / np.hypot(s_v * norm_v, s_a * norm_a)
    radius = float(np.median(exact))
    adv_v, adv_a, fooled = pgd_l2(logits_fn, image, audio, label, radius=radius, scale_visual=s_v, scale_audio=s_a)
    fooled = np.asarray(fooled)
    np.testing.assert_array_equal(fooled[exact < 0.97 * radius], True)      # reachable: found
    np.testing.assert_array_equal(fooled[exact > radius], False)            # beyond the ball: impossible
    wrong = np.asarray(jnp.argmax(logits_fn(adv_v, adv_a), -1)) != np.asarray(label)
    np.testing.assert_array_equal(wrong, fooled)
    assert np.all(_ball_norm(adv_v, adv_a, image, audio, s_v, s_a) <= radius * (1 + 1e-5))
    if s_v == 0:
        assert adv_v is image or np.array_equal(np.asarray(adv_v), np.asarray(image))
    if s_a == 0:
        np.testing.assert_array_equal(np.asarray(adv_a), np.asarray(audio))


def test_iterates_stay_in_range_and_do_not_depend_on_batch_mates():
    """A large ball on a nonlinear model: the frame stays in [0, 1], the waveform in [-1, 1], inside the ball; an
    example attacked alone gets the same result as in its batch."""
    k = jax.random.split(jax.random.key(3), 4)
    w_v = jax.random.normal(k[0], (int(np.prod(DIMS)), 5))
    w_a = jax.random.normal(k[1], (LENGTH, 5))
    image = jax.random.uniform(k[2], (B,) + DIMS)
    audio = jax.random.uniform(k[3], (B, LENGTH), minval=-1.0, maxval=1.0)

    def logits_fn(img, aud):
        return jnp.tanh(img.reshape(img.shape[0], -1) @ w_v) + jnp.sin(aud @ w_a)

    label = jnp.argmax(logits_fn(image, audio), -1)
    kw = dict(radius=0.3, scale_visual=1.0, scale_audio=0.5, steps=7)
    adv_v, adv_a, fooled = pgd_l2(logits_fn, image, audio, label, **kw)
    assert float(adv_v.min()) >= 0 and float(adv_v.max()) <= 1
    assert float(adv_a.min()) >= -1 and float(adv_a.max()) <= 1
    assert np.all(_ball_norm(adv_v, adv_a, image, audio, 1.0, 0.5) <= 0.3 * (1 + 1e-5))
    assert 0 < int(np.sum(fooled)) < B
    one_v, one_a, one_fooled = pgd_l2(logits_fn, image[5:6], audio[5:6], label[5:6], **kw)
    np.testing.assert_allclose(np.asarray(one_v[0]), np.asarray(adv_v[5]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(one_a[0]), np.asarray(adv_a[5]), atol=1e-6)
    assert bool(one_fooled[0]) == bool(fooled[5])


def test_bad_arguments_are_clear_errors():
    logits_fn, image, audio, label, *_ = _linear()
    with pytest.raises(ValueError, match="at least one"):
        pgd_l2(logits_fn, image, audio, label, radius=1.0, scale_visual=0.0, scale_audio=0.0)
    with pytest.raises(ValueError, match=">= 0"):
        pgd_l2(logits_fn, image, audio, label, radius=-1.0, scale_visual=1.0, scale_audio=0.0)


def test_a_radius_per_example_is_each_examples_own_ball():
    """Each example attacked just inside its own closed-form distance is never fooled, just beyond it always."""
    logits_fn, image, audio, label, margin, norm_v, norm_a = _linear()
    exact = margin / np.hypot(0.25 * norm_v, 0.05 * norm_a)
    kw = dict(scale_visual=0.25, scale_audio=0.05)
    _, _, inside = pgd_l2(logits_fn, image, audio, label, radius=jnp.asarray(exact * 0.99), **kw)
    _, _, beyond = pgd_l2(logits_fn, image, audio, label, radius=jnp.asarray(exact * 1.03), **kw)
    assert not np.any(np.asarray(inside)) and np.all(np.asarray(beyond))
