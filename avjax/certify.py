"""Certified robustness per modality: randomized smoothing (Cohen, Rosenfeld & Kolter 2019) with a noise level each.

    prediction, radius, abstain = avjax.certify.certify(logits_fn, image, audio, sigma_visual=0.25,
                                                        sigma_audio=0.05, key=jax.random.key(0))

The smoothed classifier g(x) = argmax_c P(f(x_v + d_v, x_a + d_a) = c), d_v ~ N(0, sigma_visual^2 I) on the pixels
(in [0, 1], before any normalisation) and d_a ~ N(0, sigma_audio^2 I) on the waveform samples, added without
clamping (the base model sees the noisy inputs). In the whitened coordinates (d_v / sigma_visual, d_a / sigma_audio)
the noise is isotropic, so Cohen et al.'s theorem certifies, with probability >= 1 - alpha over the draws,
g's prediction against every perturbation with

    sqrt(|delta_v|^2 / sigma_visual^2 + |delta_a|^2 / sigma_audio^2) < radius,

i.e. sigma_visual * radius in pixels (L2) with the audio untouched, sigma_audio * radius in samples with the frame
untouched. A modality with sigma 0 is left exactly as given and certified against no change of it. CERTIFY as in
the paper: the top class of `n0` selection draws, then a one-sided Clopper-Pearson lower bound pA on its probability
from `n` separate estimation draws; radius = Phi^-1(pA), abstaining (radius 0) where pA <= 1/2.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from avjax import parallel
from avjax.attacks.core import as_model_fns


def certify(logits_fn, image, audio, *, sigma_visual, sigma_audio, n0=100, n=10000, alpha=0.001, key,
            draws_per_call=100, mesh=None):
    """-> (prediction (B,) int, radius (B,) float, abstain (B,) bool), numpy arrays.

    `draws_per_call` noisy copies of the whole batch go through the model at once (B x draws_per_call inputs:
    the memory a call needs); the draws run in a jitted `lax.scan`, the batch sharded over `mesh`'s devices when
    it divides evenly. `prediction` is the top class under noise (also where abstaining)."""
    image, audio = jnp.asarray(image, jnp.float32), jnp.asarray(audio, jnp.float32)
    _check(image, audio, sigma_visual, sigma_audio, n0, n, alpha, draws_per_call)
    fns = as_model_fns(logits_fn)
    mesh = mesh or parallel.make_mesh()
    if image.shape[0] % mesh.devices.size == 0:
        image, audio = (jax.device_put(x, parallel.data_sharded(mesh)) for x in (image, audio))
    k_select, k_estimate = jax.random.split(key)
    sigmas = (float(sigma_visual), float(sigma_audio))
    counts0 = class_counts(fns, image, audio, k_select, sigmas=sigmas, num=int(n0), chunk=int(draws_per_call))
    top = np.argmax(counts0, -1)
    counts = class_counts(fns, image, audio, k_estimate, sigmas=sigmas, num=int(n), chunk=int(draws_per_call))
    p_lower = lower_confidence_bound(counts[np.arange(top.size), top], int(n), float(alpha))
    abstain = p_lower <= 0.5
    radius = np.where(abstain, 0.0, stats.norm.ppf(np.clip(p_lower, 0.5, 1.0)))
    return top, radius, abstain


def lower_confidence_bound(successes, trials: int, alpha: float):
    """One-sided (1 - alpha) Clopper-Pearson lower bound of a binomial proportion (0 where there is no success)."""
    successes = np.asarray(successes, np.float64)
    bound = stats.beta.ppf(alpha, np.maximum(successes, 1.0), trials - successes + 1.0)
    return np.where(successes > 0, bound, 0.0)


def class_counts(fns, image, audio, key, *, sigmas, num, chunk):
    """(B, classes) int numpy: how often each class is the base model's top class over `num` noisy copies."""
    steps = -(-num // chunk)
    return np.asarray(_counts(fns, image, audio, key, sigmas=sigmas, num=num, chunk=chunk, steps=steps))


@functools.partial(jax.jit, static_argnames=("sigmas", "num", "chunk", "steps"))
def _counts(fns, image, audio, key, *, sigmas, num, chunk, steps):
    sigma_v, sigma_a = sigmas
    batch = image.shape[0]

    def noisy(x, k, sigma):
        if sigma == 0:   # untouched, bit for bit
            return jnp.broadcast_to(x[None], (chunk,) + x.shape)
        return x[None] + sigma * jax.random.normal(k, (chunk,) + x.shape, x.dtype)

    def body(totals, step):
        k_v, k_a = jax.random.split(jax.random.fold_in(key, step))
        img = noisy(image, k_v, sigma_v).reshape((chunk * batch,) + image.shape[1:])
        aud = noisy(audio, k_a, sigma_a).reshape((chunk * batch,) + audio.shape[1:])
        logits = fns(img, aud)[0]
        top = jnp.argmax(logits, -1).reshape(chunk, batch)
        valid = (step * chunk + jnp.arange(chunk)) < num                  # the last chunk's extra draws
        votes = jax.nn.one_hot(top, logits.shape[-1], dtype=jnp.int32) * valid[:, None, None]
        return totals + votes.sum(0), None

    classes = jax.eval_shape(lambda: fns(image, audio)[0]).shape[-1]
    totals, _ = jax.lax.scan(body, jnp.zeros((batch, classes), jnp.int32), jnp.arange(steps))
    return totals


def _check(image, audio, sigma_visual, sigma_audio, n0, n, alpha, draws_per_call):
    if image.ndim != 4 or audio.ndim != 2 or image.shape[0] != audio.shape[0]:
        raise ValueError(f"certify: expected image (B, H, W, 3) and audio (B, T) of one batch, got {image.shape} "
                         f"and {audio.shape}")
    if sigma_visual < 0 or sigma_audio < 0 or not (sigma_visual or sigma_audio):
        raise ValueError(f"certify: sigma_visual={sigma_visual}, sigma_audio={sigma_audio}: give noise levels >= 0, "
                         "at least one > 0")
    if min(n0, n, draws_per_call) < 1 or not 0 < alpha < 0.5:
        raise ValueError(f"certify: n0={n0}, n={n}, draws_per_call={draws_per_call} must be >= 1 and alpha={alpha} "
                         "in (0, 0.5)")
