"""FGSM, PGD and MIM on audio, vision or both (white-box, untargeted, L-inf).

    adv_image, adv_audio = avjax.attacks.pgd(logits_fn, image, audio, label,
                                             eps_visual=0.006, eps_audio=0.006, units='normalized')

`logits_fn(image, audio)` returns logits (or `(logits, out)`); pass `ModelFns(module, variables)`
to have the attack traced once per shape and to skip the frozen branch of single-modality attacks.
Images are pixels in [0, 1], audio waveforms in [-1, 1]; outputs are in the same spaces. A
modality whose eps is 0 is returned untouched (bit-identical). See `core.py` for the semantics and
`variant='original'` for the released code's flaws, reproduced exactly.
"""
import jax
import jax.numpy as jnp
import numpy as np

from avjax.attacks.core import LOSSES, METHODS, VARIANTS, AttackConfig, as_model_fns, run_attack
from avjax.attacks.model_fns import ModelFns
from avjax.attacks.threat import UNITS, image_space, pixel_eps
from avjax.models.resnet import IMAGENET_MEAN, IMAGENET_STD

_run = jax.jit(run_attack, static_argnames=("cfg",))


def _nonzero(eps) -> bool:
    if isinstance(eps, jax.core.Tracer):
        return True  # unknown at trace time: attack (pass Python numbers to get the eps-0 identity)
    return bool(np.any(np.asarray(eps) != 0))


def make_config(method, *, eps_visual, eps_audio, units="pixel", steps=10, step_fraction=1.0 / 8.0,
                momentum=1.0, random_start=False, restarts=1, loss="ce", cos_weight=1.0,
                variant="standard", loop="auto", mean=IMAGENET_MEAN, std=IMAGENET_STD) -> AttackConfig:
    """The static AttackConfig of an attack call (which modalities, units, loop, variant...)."""
    if method == "fgsm":
        steps, step_fraction = 1, 1.0
    return AttackConfig(method=method, steps=steps, step_fraction=step_fraction, momentum=momentum,
                        random_start=random_start, restarts=restarts, loss=loss, cos_weight=cos_weight,
                        variant=variant, loop=loop, attack_visual=_nonzero(eps_visual),
                        attack_audio=_nonzero(eps_audio), space=image_space(units, mean, std))


def attack(method, logits_fn, image, audio, label, *, eps_visual, eps_audio, key=None, **options):
    """Run `method` ('fgsm' | 'pgd' | 'mim'); options as `make_config`. -> (adv_image, adv_audio)."""
    cfg = make_config(method, eps_visual=eps_visual, eps_audio=eps_audio, **options)
    if cfg.random_start and key is None:
        raise ValueError("random_start needs a PRNG key")
    if not (cfg.attack_visual or cfg.attack_audio):
        return image, audio
    adv_v, adv_a = _run(as_model_fns(logits_fn), image, audio, label, eps_visual, eps_audio, cfg, key)
    return (adv_v if cfg.attack_visual else image), (adv_a if cfg.attack_audio else audio)


def fgsm(logits_fn, image, audio, label, *, eps_visual, eps_audio, units="pixel", **options):
    """x' = clip(x + eps * sign(grad)). `variant='original'` leaves audio unclamped, as the released code."""
    return attack("fgsm", logits_fn, image, audio, label, eps_visual=eps_visual, eps_audio=eps_audio,
                  units=units, **options)


def pgd(logits_fn, image, audio, label, *, eps_visual, eps_audio, units="pixel", steps=10, **options):
    """Madry et al.: `steps` signed steps of eps/8 (no random start by default, as the paper)."""
    return attack("pgd", logits_fn, image, audio, label, eps_visual=eps_visual, eps_audio=eps_audio,
                  units=units, steps=steps, **options)


def mim(logits_fn, image, audio, label, *, eps_visual, eps_audio, units="pixel", steps=10,
        momentum=1.0, variant="standard", **options):
    """Dong et al.: momentum over per-example L1-normalised gradients, projected onto the eps ball.

    `variant='original'` reproduces the released code (batch-global L1 norm, projection flaw).
    """
    return attack("mim", logits_fn, image, audio, label, eps_visual=eps_visual, eps_audio=eps_audio,
                  units=units, steps=steps, momentum=momentum, variant=variant, **options)


__all__ = ["fgsm", "pgd", "mim", "attack", "make_config", "run_attack", "AttackConfig", "ModelFns",
           "METHODS", "VARIANTS", "LOSSES", "UNITS", "image_space", "pixel_eps"]


def fgsm_settings(logits_fn, image, audio, label, settings, *, units="pixel", variant="standard",
                  loss="ce", cos_weight=1.0, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """FGSM for several (eps_visual, eps_audio) settings from ONE gradient (traceable).

    -> [(adv_image, adv_audio) per setting]. All settings share the clean-point gradient, so the
    three paper settings cost one forward/backward instead of three.
    """
    from avjax.attacks.core import _loss_fn
    from avjax.attacks.threat import AUDIO_BOUNDS

    fns = as_model_fns(logits_fn)
    cfg = make_config("fgsm", eps_visual=1.0, eps_audio=1.0, units=units, variant=variant, loss=loss,
                      cos_weight=cos_weight, mean=mean, std=std)
    uses_v = not isinstance(fns, ModelFns) or fns.uses_visual
    uses_a = not isinstance(fns, ModelFns) or fns.uses_audio
    (g_v, g_a), _ = jax.grad(_loss_fn(fns, cfg, None, None), argnums=(0, 1), has_aux=True)(
        image, audio, label)
    space = cfg.space
    z0 = space.to_attack(image)
    sign_v = jnp.sign(g_v * jnp.asarray(space.scale, image.dtype))
    sign_a = jnp.sign(g_a)
    out = []
    for eps_v, eps_a in settings:
        adv_v, adv_a = image, audio
        if uses_v and _nonzero(eps_v):
            adv_v, _ = space.clamp(z0 + jnp.asarray(eps_v, image.dtype) * sign_v)
        if uses_a and _nonzero(eps_a):
            adv_a = audio + jnp.asarray(eps_a, audio.dtype) * sign_a
            if variant != "original":
                adv_a = jnp.clip(adv_a, *AUDIO_BOUNDS)
        out.append((adv_v, adv_a))
    return out


__all__ += ["fgsm_settings"]
