"""PGD in an L2 ball over one or both modalities (Madry et al. 2018, L2 form), the attack that matches the L2
certificates of `avjax.certify` and the CRMT bound.

A perturbation (delta_v on the pixels, delta_a on the waveform samples) is allowed when

    sqrt(|delta_v|^2 / scale_visual^2 + |delta_a|^2 / scale_audio^2) <= radius,

a modality with scale 0 left untouched. scale_audio 0 and scale_visual 1 is the L2 ball of `radius` pixels on the
frame; scale_visual 0 and scale_audio 1 the ball of `radius` samples on the waveform; the smoothing sigmas give
the whitened ball the joint certificate is about. Each step moves the whitened perturbation u = (delta_v /
scale_visual, delta_a / scale_audio) by `radius * step_fraction` along the L2-normalised gradient of the
cross-entropy, projects u onto the ball, and clamps the frame to [0, 1] and the waveform to [-1, 1]. The attack
keeps, per example, the first iterate the model misclassifies (every iterate lies in the ball), else the last one.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from avjax.attacks.core import as_model_fns, forward_fn, frozen_features
from avjax.attacks.model_fns import ModelFns
from avjax.attacks.threat import AUDIO_BOUNDS, PIXEL_BOUNDS


@dataclasses.dataclass(frozen=True)
class L2Config:
    """Static description of an L2 PGD attack (part of the compiled program's key)."""

    steps: int = 20
    step_fraction: float = 0.25          # step = radius * step_fraction in the whitened units
    attack_visual: bool = True
    attack_audio: bool = True

    def __post_init__(self):
        if self.steps < 1 or not self.step_fraction > 0:
            raise ValueError(f"L2 PGD needs steps >= 1 and step_fraction > 0 (got {self.steps}, {self.step_fraction})")


def _norm(x):
    """Per-example L2 norm, shaped to broadcast against x."""
    return jnp.sqrt(jnp.sum(jnp.square(x), axis=tuple(range(1, x.ndim)), keepdims=True))


def _joint_norm(parts):
    """Per-example L2 norm over several arrays of the same batch, shape (B,)."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(p), axis=tuple(range(1, p.ndim))) for p in parts))


def _per_example(v, like):
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def run_pgd_l2(logits_fn, image, audio, label, radius, scale_visual, scale_audio, cfg: L2Config):
    """-> (adv_image, adv_audio, fooled (B,) bool). `radius`, a scalar or one per example (B,), and the scales may
    be traced."""
    fns = as_model_fns(logits_fn)
    attack_v = cfg.attack_visual and (not isinstance(fns, ModelFns) or fns.uses_visual)
    attack_a = cfg.attack_audio and (not isinstance(fns, ModelFns) or fns.uses_audio)
    frozen_v, frozen_a = frozen_features(fns, image, audio, attack_v, attack_a)
    forward = forward_fn(fns, frozen_v, frozen_a)

    def loss(pix_v, aud):
        logits = forward(pix_v, aud)[0]
        return optax.softmax_cross_entropy_with_integer_labels(logits, label).sum(), logits

    grad_fn = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
    s_v = jnp.asarray(scale_visual, image.dtype)
    s_a = jnp.asarray(scale_audio, audio.dtype)
    radius = jnp.broadcast_to(jnp.asarray(radius, image.dtype), label.shape)
    step = radius * cfg.step_fraction

    def project(u_v, u_a):
        """u onto the ball, then the inputs into their bounds; -> (pixels, waveform, u of the clamped inputs)."""
        parts = [u for u, on in ((u_v, attack_v), (u_a, attack_a)) if on]
        norm = _joint_norm(parts)
        shrink = jnp.where(norm > radius, radius / jnp.where(norm > 0, norm, 1.0), 1.0)
        pix_v, aud = image, audio
        if attack_v:
            pix_v = jnp.clip(image + s_v * u_v * _per_example(shrink, u_v), *PIXEL_BOUNDS)
            u_v = (pix_v - image) / jnp.where(s_v > 0, s_v, 1.0)
        if attack_a:
            aud = jnp.clip(audio + s_a * u_a * _per_example(shrink, u_a), *AUDIO_BOUNDS)
            u_a = (aud - audio) / jnp.where(s_a > 0, s_a, 1.0)
        return pix_v, aud, u_v, u_a

    def body(_, carry):
        pix_v, aud, u_v, u_a, best_v, best_a, fooled = carry
        (_, logits), (g_v, g_a) = grad_fn(pix_v, aud)
        now_fooled = jnp.argmax(logits, -1) != label
        keep = ~fooled & now_fooled   # the first iterate that fools the model is the one kept
        best_v = jnp.where(_per_example(keep, image), pix_v, best_v)
        best_a = jnp.where(_per_example(keep, audio), aud, best_a)
        fooled = fooled | now_fooled
        # gradient w.r.t. the whitened perturbation: d/du = scale * d/dx
        g_v, g_a = g_v * s_v, g_a * s_a
        parts = [g for g, on in ((g_v, attack_v), (g_a, attack_a)) if on]
        g_norm = _joint_norm(parts)
        g_norm = jnp.where(g_norm > 0, g_norm, 1.0)
        if attack_v:
            u_v = u_v + _per_example(step / g_norm, g_v) * g_v
        if attack_a:
            u_a = u_a + _per_example(step / g_norm, g_a) * g_a
        pix_v, aud, u_v, u_a = project(u_v, u_a)
        return pix_v, aud, u_v, u_a, best_v, best_a, fooled

    zeros_v, zeros_a = jnp.zeros_like(image), jnp.zeros_like(audio)
    fooled0 = jnp.zeros(label.shape, bool)
    carry = (image, audio, zeros_v, zeros_a, image, audio, fooled0)
    pix_v, aud, _, _, best_v, best_a, fooled = jax.lax.fori_loop(0, cfg.steps, body, carry)
    last_fooled = jnp.argmax(forward(pix_v, aud)[0], -1) != label
    best_v = jnp.where(_per_example(fooled, image), best_v, pix_v)
    best_a = jnp.where(_per_example(fooled, audio), best_a, aud)
    return best_v, best_a, fooled | last_fooled


_run = jax.jit(run_pgd_l2, static_argnames=("cfg",))


def pgd_l2(logits_fn, image, audio, label, *, radius, scale_visual, scale_audio, steps=20, step_fraction=0.25):
    """L2 PGD in the ball sqrt(|d_v|^2 / scale_visual^2 + |d_a|^2 / scale_audio^2) <= radius (a modality with
    scale 0 untouched; `radius` a scalar or one per example). -> (adv_image, adv_audio, fooled (B,) bool): the first
    misclassified iterate per example, else the last."""
    if scale_visual < 0 or scale_audio < 0 or np.any(np.asarray(radius) < 0):
        raise ValueError(f"L2 PGD: radius and scales must be >= 0 (got {radius}, {scale_visual}, {scale_audio})")
    cfg = L2Config(steps=steps, step_fraction=step_fraction, attack_visual=scale_visual > 0,
                   attack_audio=scale_audio > 0)
    if not (cfg.attack_visual or cfg.attack_audio):
        raise ValueError("L2 PGD: at least one of scale_visual, scale_audio must be > 0")
    return _run(as_model_fns(logits_fn), image, audio, label, radius, scale_visual, scale_audio, cfg)
