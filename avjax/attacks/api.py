"""The attack functions users call: `attack`, `fgsm`, `pgd`, `mim`, `fgsm_settings`, `make_config`,
`apgd`, `square`, `fab`.

Each builds the static config of a call and runs one jitted core (`core.run_attack`, `apgd.run_apgd`,
`square.run_square`).
"""
import jax

from avjax.attacks.apgd_attack import APGDConfig, run_apgd
from avjax.attacks.core import AttackConfig, as_model_fns, fgsm_from_one_gradient, nonzero, run_attack
from avjax.attacks.fab_attack import FABConfig, fab_search
from avjax.attacks.square_attack import SquareConfig, run_square
from avjax.attacks.threat import image_space
from avjax.common import IMAGENET_MEAN, IMAGENET_STD

_run = jax.jit(run_attack, static_argnames=("cfg",))
_run_apgd = jax.jit(run_apgd, static_argnames=("cfg",))
_run_square = jax.jit(run_square, static_argnames=("cfg",))
_fab_search = jax.jit(fab_search, static_argnames=("cfg",))


def make_config(method, *, eps_visual, eps_audio, units="pixel", steps=10, step_fraction=1.0 / 8.0,
                momentum=1.0, random_start=False, restarts=1, loss="ce", cos_weight=1.0,
                variant="standard", loop="auto", mean=IMAGENET_MEAN, std=IMAGENET_STD) -> AttackConfig:
    """The static AttackConfig of an attack call (which modalities, units, loop, variant...)."""
    if method == "fgsm":
        steps, step_fraction = 1, 1.0
    return AttackConfig(method=method, steps=steps, step_fraction=step_fraction, momentum=momentum,
                        random_start=random_start, restarts=restarts, loss=loss, cos_weight=cos_weight,
                        variant=variant, loop=loop, attack_visual=nonzero(eps_visual),
                        attack_audio=nonzero(eps_audio), space=image_space(units, mean, std))


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




def fgsm_settings(logits_fn, image, audio, label, settings, *, units="pixel", variant="standard",
                  loss="ce", cos_weight=1.0, mean=IMAGENET_MEAN, std=IMAGENET_STD, gradients=None):
    """FGSM for several (eps_visual, eps_audio) settings from ONE gradient (traceable).

    -> [(adv_image, adv_audio) per setting]; the three paper settings cost one forward/backward, none
    with `gradients`, the clean-point gradients already computed (`avjax.attacks.core.clean_gradients`).
    """
    cfg = make_config("fgsm", eps_visual=1.0, eps_audio=1.0, units=units, variant=variant, loss=loss,
                      cos_weight=cos_weight, mean=mean, std=std)
    return fgsm_from_one_gradient(logits_fn, image, audio, label, settings, cfg, gradients)


def apgd_config(*, eps_visual, eps_audio, units="pixel", steps=100, restarts=1, loss="ce", targeted=False,
                target_classes=9, rho=0.75, momentum=0.75, initial_step=2.0, cos_weight=1.0, unroll=1,
                random_start=True, point="first_success", mean=IMAGENET_MEAN, std=IMAGENET_STD) -> APGDConfig:
    """The static APGDConfig of an APGD call (the reference hyper-parameters by default)."""
    return APGDConfig(steps=steps, restarts=restarts, loss=loss, targeted=targeted, target_classes=target_classes,
                      rho=rho, momentum=momentum, initial_step=initial_step, cos_weight=cos_weight,
                      attack_visual=nonzero(eps_visual), attack_audio=nonzero(eps_audio),
                      space=image_space(units, mean, std), unroll=unroll, random_start=random_start, point=point)


def apgd(logits_fn, image, audio, label, *, eps_visual, eps_audio, key, **options):
    """APGD-CE / APGD-DLR (`loss`), APGD-T (`targeted=True, loss='dlr'`); options as `apgd_config`.
    -> (adv_image, adv_audio), the first misclassifying point per example (else its highest loss;
    `point='highest_loss'`: the highest loss, fooled or not)."""
    cfg = apgd_config(eps_visual=eps_visual, eps_audio=eps_audio, **options)
    if not (cfg.attack_visual or cfg.attack_audio):
        return image, audio
    return _run_apgd(as_model_fns(logits_fn), image, audio, label, eps_visual, eps_audio, cfg, key)


def square_config(*, eps_visual, eps_audio, units="pixel", queries=5000, p_init=0.8, mean=IMAGENET_MEAN,
                  std=IMAGENET_STD) -> SquareConfig:
    """The static SquareConfig of a Square call."""
    return SquareConfig(queries=queries, p_init=p_init, attack_visual=nonzero(eps_visual),
                        attack_audio=nonzero(eps_audio), space=image_space(units, mean, std))


def square(logits_fn, image, audio, label, *, eps_visual, eps_audio, key, **options):
    """Score-based Square attack; options as `square_config`. -> ((adv_image, adv_audio), queries (B,))."""
    cfg = square_config(eps_visual=eps_visual, eps_audio=eps_audio, **options)
    return _run_square(as_model_fns(logits_fn), image, audio, label, eps_visual, eps_audio, cfg, key)


def fab_config(*, eps_visual, eps_audio, units="pixel", steps=100, restarts=1, eta=1.05, beta=0.9, alpha_max=0.1,
               unroll=1, targeted=False, target_classes=9, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> FABConfig:
    """The static FABConfig of a FAB call (the reference hyper-parameters by default; `targeted`: FAB-T over
    the top `target_classes` runner-up classes)."""
    return FABConfig(steps=steps, restarts=restarts, eta=eta, beta=beta, alpha_max=alpha_max,
                     attack_visual=nonzero(eps_visual), attack_audio=nonzero(eps_audio),
                     space=image_space(units, mean, std), unroll=unroll, targeted=targeted,
                     target_classes=target_classes)


def fab(logits_fn, image, audio, label, *, eps_visual, eps_audio, key, return_radius=False, **options):
    """FAB-L-inf or FAB-T (minimal perturbation); options as `fab_config`. -> (adv_image, adv_audio): the smallest
    adversarial point found when it lies in the eps balls, else the clean input; with `return_radius`, also
    per example the smallest ||(x' - x) / eps||_inf of an adversarial point found (inf where none)."""
    cfg = fab_config(eps_visual=eps_visual, eps_audio=eps_audio, **options)
    adv_v, adv_a, radius = _fab_search(as_model_fns(logits_fn), image, audio, label, eps_visual, eps_audio, cfg, key)
    return (adv_v, adv_a, radius) if return_radius else (adv_v, adv_a)
