"""Feature collision: an adaptive attack on the external feature memory (ExFMem).

ExFMem replaces each feature f by a blend of f and its sparse reconstruction h M from stored training
features (atoms). A gradient through the lasso coder may mislead (the coder is non-smooth), so instead of
attacking the logits this attack moves the *encoder's* feature (before the memory) onto an atom pair of
another class: once f equals such an atom, the coder reconstructs it from that atom and the defended
feature is that of the other class. The memory stores no labels, so each atom pair (visual atom k,
audio atom k: the features of one training example) is labelled by the model's own head
(`atom_labels`). Targets (`memory_targets`): per example, the atom pair of another class (than the
true one) nearest to its clean features (cosine). The attack (`run_feature_collision`) is PGD with
signed steps of eps * step_fraction on -||f(x') - target||^2 (per modality, over the attacked ones),
projected onto each modality's eps ball and bounds, and it keeps the first iterate that the defended
model misclassifies. Loops are `lax.fori_loop`.
"""
import dataclasses

import jax
import jax.numpy as jnp

from avjax.attacks.core import nonzero
from avjax.attacks.threat import AUDIO_BOUNDS, ImageSpace, image_space
from avjax.common import IMAGENET_MEAN, IMAGENET_STD


@dataclasses.dataclass(frozen=True)
class CollisionConfig:
    """Static description of a feature-collision attack (hashable)."""

    steps: int = 100
    step_fraction: float = 1.0 / 8.0
    attack_visual: bool = True
    attack_audio: bool = True
    space: ImageSpace = ImageSpace()
    unroll: int = 1

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError("steps must be >= 1")


def collision_config(*, eps_visual, eps_audio, units="pixel", steps=100, step_fraction=1.0 / 8.0, unroll=1,
                     mean=IMAGENET_MEAN, std=IMAGENET_STD) -> CollisionConfig:
    return CollisionConfig(steps=steps, step_fraction=step_fraction, attack_visual=nonzero(eps_visual),
                           attack_audio=nonzero(eps_audio), space=image_space(units, mean, std), unroll=unroll)


def _has_memory(fns) -> bool:
    return getattr(getattr(fns, "module", None), "memory", None) is not None


def raw_features(fns, image, audio):
    """(f_v, f_a) of the encoders before the memory."""
    return fns.raw_features(image, audio)


def atom_labels(fns):
    """(K,) the class the model's head gives each stored atom pair (visual atom k with audio atom k)."""
    if not _has_memory(fns):
        raise ValueError("feature collision targets the atoms of an external memory; this model has none")
    memory = fns.variables["memory"]
    logits, _ = fns.classify(memory["visual"], memory["audio"])
    return jnp.argmax(logits, -1)


def _correct_mask(fns, image, audio, label):
    return jnp.argmax(fns(image, audio)[0], -1) == label


def _unit(x):
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@jax.jit
def memory_targets(fns, image, audio, label):
    """(target_visual (B, D), target_audio (B, D)): per example the atom pair of another class than `label`
    nearest (cosine of the concatenated features) to the example's clean encoder features (one program per
    model and shapes, also when called eagerly)."""
    memory = fns.variables["memory"]
    f_v, f_a = raw_features(fns, image, audio)
    queries = jnp.concatenate([_unit(f_v), _unit(f_a)], -1)
    atoms = jnp.concatenate([_unit(memory["visual"]), _unit(memory["audio"])], -1)
    similarity = queries @ atoms.T                                     # (B, K)
    other = atom_labels(fns)[None, :] != label[:, None]
    if_none = jnp.any(other, -1, keepdims=True)                         # every atom of the true class: any
    similarity = jnp.where(other | ~if_none, similarity, -jnp.inf)
    index = jnp.argmax(similarity, -1)
    return memory["visual"][index], memory["audio"][index]


def run_feature_collision(fns, image, audio, label, eps_visual, eps_audio, cfg: CollisionConfig, targets=None):
    """-> (adv_image, adv_audio). `targets` (visual, audio) default to `memory_targets`."""
    space = cfg.space
    attack_v, attack_a = cfg.attack_visual, cfg.attack_audio
    if not (attack_v or attack_a):
        return image, audio
    t_v, t_a = targets if targets is not None else memory_targets(fns, image, audio, label)
    eps_v, eps_a = jnp.asarray(eps_visual, image.dtype), jnp.asarray(eps_audio, audio.dtype)
    scale = jnp.asarray(space.scale, image.dtype)

    def loss(pix_v, aud):
        f_v, f_a = raw_features(fns, pix_v, aud)
        total = 0.0
        if attack_v:
            total = total - jnp.sum(jnp.mean((f_v - t_v) ** 2, -1))
        if attack_a:
            total = total - jnp.sum(jnp.mean((f_a - t_a) ** 2, -1))
        return total

    grad = jax.grad(loss, argnums=(0, 1))
    z0 = space.to_attack(image)

    def step(_, carry):
        pix_v, z, aud, best_v, best_a, found = carry
        g_v, g_a = grad(pix_v, aud)
        if attack_v:
            z = z + eps_v * cfg.step_fraction * jnp.sign(g_v * scale)
            pix_v, z = space.clamp(z0 + jnp.clip(z - z0, -eps_v, eps_v))
        if attack_a:
            aud = jnp.clip(audio + jnp.clip(aud + eps_a * cfg.step_fraction * jnp.sign(g_a) - audio, -eps_a, eps_a),
                           *AUDIO_BOUNDS)
        wrong = ~_correct_mask(fns, pix_v, aud, label)
        newly = wrong & ~found
        keep = lambda new, old: jnp.where(newly.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)  # noqa: E731
        return pix_v, z, aud, keep(pix_v, best_v), keep(aud, best_a), found | wrong

    carry = (image, z0, audio, image, audio, jnp.zeros(label.shape, bool))
    pix_v, _, aud, best_v, best_a, found = jax.lax.fori_loop(0, cfg.steps, step, carry, unroll=cfg.unroll)
    pick = lambda best, last: jnp.where(found.reshape((-1,) + (1,) * (last.ndim - 1)), best, last)  # noqa: E731
    return (pick(best_v, pix_v) if attack_v else image), (pick(best_a, aud) if attack_a else audio)


_run = jax.jit(run_feature_collision, static_argnames=("cfg",))


def feature_collision(fns, image, audio, label, *, eps_visual, eps_audio, targets=None, **options):
    """Feature collision on a memory-defended model (`ModelFns`); options as `collision_config`.
    -> (adv_image, adv_audio)."""
    cfg = collision_config(eps_visual=eps_visual, eps_audio=eps_audio, **options)
    return _run(fns, image, audio, label, eps_visual, eps_audio, cfg, targets)
