"""Randomized smoothing per modality: on linear models the certificate never exceeds the exact radius
|margin| / sqrt(sigma_v^2 |w_v|^2 + sigma_a^2 |w_a|^2) and comes close to it with many draws; a modality with sigma
0 is left untouched; bad arguments are clear errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from avjax.certify import certify, lower_confidence_bound

B, DIMS, LENGTH = 24, (4, 4, 3), 32


def _linear(seed=0):
    k = jax.random.split(jax.random.key(seed), 4)
    w_v = jax.random.normal(k[0], (int(np.prod(DIMS)),)) / 4
    w_a = jax.random.normal(k[1], (LENGTH,)) / 4
    image = jax.random.uniform(k[2], (B,) + DIMS)
    audio = jax.random.uniform(k[3], (B, LENGTH), minval=-0.5, maxval=0.5)
    bias = -float(jnp.median(image.reshape(B, -1) @ w_v + audio @ w_a))   # both classes among the examples

    def logits_fn(img, aud):
        g = img.reshape(img.shape[0], -1) @ w_v + aud @ w_a + bias
        return jnp.stack([jnp.zeros_like(g), g], -1)

    margin = np.asarray(logits_fn(image, audio)[:, 1])
    return logits_fn, image, audio, margin, float(jnp.linalg.norm(w_v)), float(jnp.linalg.norm(w_a))


@pytest.mark.slow
@pytest.mark.parametrize("sigma_visual,sigma_audio", [(0.25, 0.25), (0.5, 0.0), (0.0, 0.3)])
def test_the_certificate_of_a_linear_model_is_sound_and_tight(sigma_visual, sigma_audio):
    logits_fn, image, audio, margin, norm_v, norm_a = _linear()
    exact = np.abs(margin) / np.hypot(sigma_visual * norm_v, sigma_audio * norm_a)
    prediction, radius, abstain = certify(logits_fn, image, audio, sigma_visual=sigma_visual,
                                          sigma_audio=sigma_audio, n0=100, n=20000, alpha=0.001,
                                          key=jax.random.key(1), draws_per_call=2000)
    assert np.all(radius <= exact + 1e-6)                                 # never more than the truth
    certified = ~abstain
    np.testing.assert_array_equal(prediction[certified], (margin[certified] > 0).astype(int))
    near = (exact > 0.3) & (exact < 2.0)                                  # away from 1/2 and from the n cap
    assert near.sum() >= 5 and np.all(radius[near] >= exact[near] - 0.1)
    assert np.all(abstain[exact < 0.01]) and not np.any(abstain[exact > 0.3])
    assert np.all(radius[abstain] == 0)


def test_a_modality_with_sigma_zero_is_left_untouched():
    """A model that answers class 1 unless its audio is exactly the given one: sigma_audio = 0 certifies class 0."""
    _, image, audio, _, _, _ = _linear()

    def exact_audio(img, aud):
        same = jnp.all(aud.reshape(-1, B, LENGTH) == audio[None], -1).reshape(-1)
        return jnp.stack([same.astype(jnp.float32), 1.0 - same.astype(jnp.float32)], -1) + 0 * img.sum((1, 2, 3))[:, None]

    prediction, radius, abstain = certify(exact_audio, image, audio, sigma_visual=0.5, sigma_audio=0.0, n0=10,
                                          n=200, key=jax.random.key(0), draws_per_call=50)
    assert np.all(prediction == 0) and not abstain.any() and np.all(radius > 0)
    prediction, _, _ = certify(exact_audio, image, audio, sigma_visual=0.0, sigma_audio=1e-3, n0=10, n=200,
                               key=jax.random.key(0), draws_per_call=50)
    assert np.all(prediction == 1)


def test_the_lower_bound_is_clopper_pearson():
    np.testing.assert_allclose(lower_confidence_bound([990], 1000, 0.001), stats.beta.ppf(0.001, 990, 11))
    assert lower_confidence_bound([0], 1000, 0.001)[0] == 0.0
    assert lower_confidence_bound([1000], 1000, 0.001)[0] == pytest.approx(0.001 ** (1 / 1000))


@pytest.mark.parametrize("kw,message", [(dict(sigma_visual=0.0, sigma_audio=0.0), "at least one > 0"),
                                        (dict(sigma_visual=-1.0, sigma_audio=0.1), "noise levels >= 0"),
                                        (dict(alpha=0.7), "alpha=0.7"), (dict(n=0), "n=0")])
def test_bad_arguments_are_clear_errors(kw, message):
    logits_fn, image, audio, _, _, _ = _linear()
    args = dict(sigma_visual=0.1, sigma_audio=0.1, key=jax.random.key(0)) | kw
    with pytest.raises(ValueError, match=message):
        certify(logits_fn, image, audio, **args)
