"""One iterative sign-gradient core behind FGSM, PGD and MIM.

FGSM is one step of size eps; PGD is `steps` signed steps of `step_size` with projection onto the
eps ball around the clean input; MIM accumulates L1-normalised gradients with momentum before the
signed step. All of them:
  * update only modalities whose eps is non-zero (a modality with eps 0 is returned bit-identical);
  * with a `ModelFns`, compute the features of an unattacked modality once and reuse them;
  * apply the model with train=False (no BatchNorm update) in the dtype of the inputs;
  * loop with `lax.fori_loop` (compiled once for any step count) or, with `loop='unroll'`, a
    Python loop unrolled in the program (as fast on XLA:CPU, longer to compile; benchmarks/attacks.py).

`variant='original'` reproduces the released code's flaws exactly (docs/method.md, "Attacks"): FGSM does not
clamp audio; MIM normalises the gradient by the L1 norm of the whole batch tensor (one scalar per
modality per batch, so an example's attack depends on its batch-mates) and projects with bounds
built from the current iterate rather than the clean input (no eps ball; in normalised space a
floor at 0 that brightens dark pixels).
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from avjax.attacks.model_fns import ModelFns, StaticFn
from avjax.attacks.threat import AUDIO_BOUNDS, ImageSpace
from avjax.common import cosine_similarity

METHODS = ("fgsm", "pgd", "mim")
VARIANTS = ("standard", "original")
LOSSES = ("ce", "ce+cos")


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """Static description of one attack (hashable: part of the compiled program's key)."""

    method: str = "pgd"
    steps: int = 10
    step_fraction: float = 1.0 / 8.0   # step size = eps * step_fraction (PGD / MIM)
    momentum: float = 1.0               # MIM decay factor mu
    random_start: bool = False
    restarts: int = 1
    loss: str = "ce"
    cos_weight: float = 1.0             # weight of mean cos(f_v, f_a) in loss 'ce+cos'
    variant: str = "standard"
    loop: str = "auto"                  # 'fori' | 'unroll' | 'auto' (= 'fori')
    attack_visual: bool = True
    attack_audio: bool = True
    space: ImageSpace = ImageSpace()

    def __post_init__(self):
        for name, value, allowed in (("method", self.method, METHODS), ("variant", self.variant, VARIANTS),
                                     ("loss", self.loss, LOSSES), ("loop", self.loop, ("fori", "unroll", "auto"))):
            if value not in allowed:
                raise ValueError(f"unknown attack {name} {value!r}; choose one of {allowed}")
        if self.steps < 1 or self.restarts < 1:
            raise ValueError("steps and restarts must be >= 1")


def resolve_loop(loop: str) -> str:
    """'auto' is `lax.fori_loop` on every backend: compiled once for any step count, and on XLA:CPU as
    fast as the unrolled loop since the nets' convolutions have canonical input gradients
    (avjax/models/canonical_conv.py; benchmarks/attacks.py measures both). 'unroll' stays available: a
    Python loop unrolled in the program (compile time grows with the steps)."""
    return "fori" if loop == "auto" else loop


def as_model_fns(logits_fn):
    return logits_fn if isinstance(logits_fn, (ModelFns, StaticFn)) else StaticFn(logits_fn)


def forward_fn(fns, frozen_v=None, frozen_a=None):
    """-> forward(pix_v, audio) -> (logits, out), reusing the frozen features of an unattacked modality."""

    def forward(pix_v, audio):
        if isinstance(fns, ModelFns) and (frozen_v is not None or frozen_a is not None):
            f_v = frozen_v if frozen_v is not None else fns.encode_visual(pix_v)
            f_a = frozen_a if frozen_a is not None else fns.encode_audio(audio)
            return fns.classify(f_v, f_a)
        return fns(pix_v, audio)

    return forward


def frozen_features(fns, image, audio, attack_v, attack_a):
    """(f_v, f_a) of the modalities an attack leaves alone (None where attacked or unused)."""
    if not isinstance(fns, ModelFns):
        return None, None
    frozen_v = fns.encode_visual(image) if not attack_v and fns.uses_visual else None
    frozen_a = fns.encode_audio(audio) if not attack_a and fns.uses_audio else None
    return frozen_v, frozen_a


def _loss_fn(fns, cfg, frozen_v, frozen_a):
    """-> loss(pix_v, audio, label) -> (mean loss, per-example CE)."""
    forward = forward_fn(fns, frozen_v, frozen_a)

    def loss(pix_v, audio, label):
        logits, out = forward(pix_v, audio)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, label)
        total = ce.mean()
        if cfg.loss == "ce+cos" and "visual" in out and "audio" in out:  # only where both features exist
            total = total + cfg.cos_weight * cosine_similarity(out["visual"], out["audio"]).mean()
        return total, (ce, logits)

    return loss


def fgsm_update(space, image, z0, audio, g_v, g_a, eps_v, eps_a, *, clamp_audio=True):
    """x' = x + eps * sign(g) per modality (None gradient: modality untouched); frame kept in [0, 1],
    audio clamped to [-1, 1] unless `clamp_audio=False` (the released code's FGSM)."""
    adv_v, adv_a = image, audio
    if g_v is not None:
        adv_v, _ = space.clamp(z0 + eps_v * jnp.sign(g_v))
    if g_a is not None:
        adv_a = audio + eps_a * jnp.sign(g_a)
        if clamp_audio:
            adv_a = jnp.clip(adv_a, *AUDIO_BOUNDS)
    return adv_v, adv_a


def clean_gradients(fns, image, audio, label, cfg: AttackConfig):
    """-> ((g_pixels, g_audio), (per-example CE, logits)): the gradients of `cfg`'s attack loss at the clean
    inputs w.r.t. both inputs (traceable). It is the first gradient of FGSM, PGD and MIM in every setting,
    so an evaluation computes it once per batch and hands it to each attack (`first_gradients`)."""
    return jax.grad(_loss_fn(as_model_fns(fns), cfg, None, None), argnums=(0, 1), has_aux=True)(image, audio, label)


def fgsm_from_one_gradient(fns, image, audio, label, settings, cfg: AttackConfig, gradients=None):
    """FGSM for several (eps_visual, eps_audio) settings from ONE gradient (traceable).

    -> [(adv_image, adv_audio) per setting]. All settings share the clean-point gradient, so the
    three paper settings cost one forward/backward instead of three; `gradients`, that gradient
    already computed (`clean_gradients`), costs none. `cfg` gives loss, units, variant.
    """
    fns = as_model_fns(fns)
    uses_v = not isinstance(fns, ModelFns) or fns.uses_visual
    uses_a = not isinstance(fns, ModelFns) or fns.uses_audio
    g_v, g_a = gradients if gradients is not None else clean_gradients(fns, image, audio, label, cfg)[0]
    space = cfg.space
    g_v = g_v * jnp.asarray(space.scale, image.dtype)
    z0 = space.to_attack(image)
    return [fgsm_update(space, image, z0, audio, g_v if uses_v and nonzero(eps_v) else None,
                        g_a if uses_a and nonzero(eps_a) else None, jnp.asarray(eps_v, image.dtype),
                        jnp.asarray(eps_a, audio.dtype), clamp_audio=cfg.variant != "original")
            for eps_v, eps_a in settings]


def nonzero(eps) -> bool:
    """Whether an eps attacks its modality (a traced eps is unknown at trace time: attack)."""
    if isinstance(eps, jax.core.Tracer):
        return True
    return bool(np.any(np.asarray(eps) != 0))


def _l1_normalise(g, per_example: bool):
    axes = tuple(range(1, g.ndim)) if per_example else tuple(range(g.ndim))
    norm = jnp.sum(jnp.abs(g), axis=axes, keepdims=True)
    return g / jnp.where(norm > 0, norm, 1)


def _original_mim_projection(x, eps, lower):
    """The released code's MIM 'projection' (bounds from the current iterate, verbatim)."""
    a = jnp.maximum(x - eps, lower)
    b = jnp.where(x >= a, x, a)
    return jnp.where(b > x + eps, x + eps, b)


def run_attack(logits_fn, image, audio, label, eps_visual, eps_audio, cfg: AttackConfig, key=None, *,
               mim=None, first_gradients=None):
    """The core: -> (adv_image, adv_audio). eps values may be traced scalars (eps sweeps).

    `first_gradients`, the gradients at the clean inputs (`clean_gradients(...)[0]`), replace the first
    step's forward/backward pass (there is no other gradient at the clean point; without a random start
    every method's first step takes it); ignored with `random_start`.

    `mim`, a (traced) boolean, picks MIM where true and PGD where false in ONE compiled program (for a
    PGD or MIM `cfg`; the method's own steps, step size and projection, selected elementwise, so PGD's
    iterates are exactly those of `method='pgd'`): an evaluation compiles one program per setting for
    both methods instead of two."""
    if mim is not None and cfg.method not in ("pgd", "mim"):
        raise ValueError(f"mim= selects between PGD and MIM; the config's method is {cfg.method!r}")
    fns = as_model_fns(logits_fn)
    space = cfg.space
    dtype_v = image.dtype
    eps_v = jnp.asarray(eps_visual, dtype_v)
    eps_a = jnp.asarray(eps_audio, audio.dtype)
    attack_v = cfg.attack_visual and (not isinstance(fns, ModelFns) or fns.uses_visual)
    attack_a = cfg.attack_audio and (not isinstance(fns, ModelFns) or fns.uses_audio)
    if not (attack_v or attack_a):
        return image, audio
    frozen_v, frozen_a = frozen_features(fns, image, audio, attack_v, attack_a)
    loss = _loss_fn(fns, cfg, frozen_v, frozen_a)
    argnums = tuple(i for i, on in ((0, attack_v), (1, attack_a)) if on)
    grad_fn = jax.grad(loss, argnums=argnums, has_aux=True)
    scale = jnp.asarray(space.scale, dtype_v)

    def gradients(pix_v, aud):
        grads, (ce, _) = grad_fn(pix_v, aud, label)
        grads = dict(zip(argnums, grads))
        g_v = grads[0] * scale if attack_v else None  # d/dz = d/dpixel * scale
        g_a = grads[1] if attack_a else None
        return g_v, g_a, ce

    z0 = space.to_attack(image)
    original = cfg.variant == "original"

    given = first_gradients is not None and not cfg.random_start
    if given:  # the clean-point gradients as `gradients` returns them
        first = (first_gradients[0] * scale if attack_v else None, first_gradients[1] if attack_a else None)

    if cfg.method == "fgsm":
        g_v, g_a = first if given else gradients(image, audio)[:2]
        return fgsm_update(space, image, z0, audio, g_v if attack_v else None, g_a if attack_a else None,
                           eps_v, eps_a, clamp_audio=not original)

    alpha_v, alpha_a = eps_v * cfg.step_fraction, eps_a * cfg.step_fraction
    per_example = not original

    def signed_step(x, x0, g, mom, alpha, eps, lower):
        """One PGD / MIM update of one modality, before its bounds clamp."""
        if mim is not None:  # both, selected by the traced flag
            mom = jnp.where(mim, _l1_normalise(g, per_example) + cfg.momentum * mom, mom)
            x = x + alpha * jnp.sign(jnp.where(mim, mom, g))
            projected = x0 + jnp.clip(x - x0, -eps, eps)
            if original:
                projected = jnp.where(mim, _original_mim_projection(x, eps, lower), projected)
            return projected, mom
        if cfg.method == "mim":
            mom = _l1_normalise(g, per_example) + cfg.momentum * mom
            g = mom
        x = x + alpha * jnp.sign(g)
        if cfg.method == "mim" and original:
            return _original_mim_projection(x, eps, lower), mom
        return x0 + jnp.clip(x - x0, -eps, eps), mom

    def update(carry, g_v, g_a):
        pix_v, z, aud, mom_v, mom_a = carry
        if attack_v:
            z, mom_v = signed_step(z, z0, g_v, mom_v, alpha_v, eps_v, 0.0)
            pix_v, z = space.clamp(z)
        if attack_a:
            aud, mom_a = signed_step(aud, audio, g_a, mom_a, alpha_a, eps_a, AUDIO_BOUNDS[0])
            aud = jnp.clip(aud, *AUDIO_BOUNDS)
        return pix_v, z, aud, mom_v, mom_a

    def step(_, carry):
        g_v, g_a, _ = gradients(carry[0], carry[2])
        return update(carry, g_v, g_a)

    def one_run(run_key):
        pix_v, z, aud = image, z0, audio
        if cfg.random_start:
            kv, ka = jax.random.split(run_key)
            if attack_v:
                z = z0 + jax.random.uniform(kv, z0.shape, dtype_v, -1.0, 1.0) * eps_v
                pix_v, z = space.clamp(z)
            if attack_a:
                aud = jnp.clip(audio + jax.random.uniform(ka, audio.shape, audio.dtype, -1.0, 1.0) * eps_a,
                               *AUDIO_BOUNDS)
        carry = (pix_v, z, aud, jnp.zeros_like(z0), jnp.zeros_like(audio))
        start = 0
        if given:
            carry, start = update(carry, *first), 1
        if resolve_loop(cfg.loop) == "fori":
            carry = jax.lax.fori_loop(start, cfg.steps, step, carry)
        else:
            for i in range(start, cfg.steps):
                carry = step(i, carry)
        return carry[0], carry[2]

    if cfg.restarts == 1:
        adv_v, adv_a = one_run(key if key is not None else jax.random.key(0))
    else:
        if key is None:
            raise ValueError("restarts > 1 needs a PRNG key")
        adv_v, adv_a = _best_of_restarts(one_run, loss, label, jax.random.split(key, cfg.restarts))
    return (adv_v if attack_v else image), (adv_a if attack_a else audio)


def _best_of_restarts(one_run, loss, label, keys):
    """Per example, keep the restart that misclassifies it, else the one with the highest CE."""

    def score(adv_v, adv_a):
        _, (ce, logits) = loss(adv_v, adv_a, label)
        wrong = jnp.argmax(logits, -1) != label
        return jnp.where(wrong, jnp.inf, ce)

    def body(best, run_key):
        adv_v, adv_a = one_run(run_key)
        s = score(adv_v, adv_a)
        better = s > best[2]
        pick = lambda new, old: jnp.where(better.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)  # noqa: E731
        return (pick(adv_v, best[0]), pick(adv_a, best[1]), jnp.maximum(s, best[2])), None

    first_v, first_a = one_run(keys[0])
    best, _ = jax.lax.scan(body, (first_v, first_a, score(first_v, first_a)), keys[1:])
    return best[0], best[1]

