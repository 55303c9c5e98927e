"""Invariants of avjax.attacks: the ball and the bounds, eps 0, closed form, batch-mates, tracing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import attacks
from avjax.attacks import api as attack_api
from avjax.common import IMAGENET_STD
from tests.attacks.conftest import sensitive_model

SETTINGS = {"xA": (0.0, 0.012), "xV": (0.012, 0.0), "xAV": (0.006, 0.006)}
TOL = 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("method,variant,units", [
    ("fgsm", "standard", "normalized"), ("pgd", "standard", "normalized"), ("mim", "standard", "normalized"),
    ("mim", "original", "normalized"), ("pgd", "standard", "pixel"), ("mim", "original", "pixel")])
def test_perturbation_stays_in_ball_and_bounds(small, method, variant, setting, units):
    fns, image, audio, label = small
    eps_v, eps_a = SETTINGS[setting]
    adv_v, adv_a = attacks.attack(method, fns, image, audio, label, eps_visual=eps_v, eps_audio=eps_a,
                                  units=units, variant=variant)
    assert adv_v.dtype == image.dtype and adv_a.dtype == audio.dtype
    assert float(adv_v.min()) >= 0 and float(adv_v.max()) <= 1
    assert float(adv_a.min()) >= -1 and float(adv_a.max()) <= 1
    ball_v = np.asarray(attacks.pixel_eps(eps_v, units))  # per channel
    dv = np.abs(np.asarray(adv_v - image)).max(axis=(0, 1, 2))
    da = float(np.abs(np.asarray(adv_a - audio)).max())
    if variant == "original":  # the released MIM has no eps ball: up to 10 steps of eps/8
        assert da <= 1.25 * eps_a + TOL
        return
    assert np.all(dv <= ball_v + TOL), (dv, ball_v)
    assert da <= eps_a + TOL
    if eps_v:
        assert np.all(dv >= 0.5 * ball_v), "the visual perturbation should use its budget"
    if eps_a:
        assert da >= 0.5 * eps_a


@pytest.mark.parametrize("method", ["fgsm", "pgd", "mim"])
def test_eps_zero_is_bit_identical(small, method):
    fns, image, audio, label = small
    adv_v, adv_a = attacks.attack(method, fns, image, audio, label, eps_visual=0.0, eps_audio=0.012,
                                  units="normalized")
    assert np.array_equal(np.asarray(adv_v), np.asarray(image))
    assert not np.array_equal(np.asarray(adv_a), np.asarray(audio))
    adv_v, adv_a = attacks.attack(method, fns, image, audio, label, eps_visual=0.0, eps_audio=0.0)
    assert adv_v is image and adv_a is audio


def test_unused_modality_is_never_perturbed():
    fns, image, audio, label = sensitive_model("audio")
    adv_v, adv_a = attacks.pgd(fns, image, audio, label, eps_visual=0.03, eps_audio=0.03)
    assert np.array_equal(np.asarray(adv_v), np.asarray(image))
    assert not np.array_equal(np.asarray(adv_a), np.asarray(audio))


def test_fgsm_on_a_linear_model_is_the_closed_form():
    rng = np.random.default_rng(0)
    b, h, length, c = 5, 4, 16, 3
    w_v = rng.normal(size=(h * h * 3, c))
    w_a = rng.normal(size=(length, c))
    image = rng.uniform(0, 1, (b, h, h, 3)).astype(np.float32)
    audio = rng.uniform(-1, 1, (b, length)).astype(np.float32)
    label = rng.integers(0, c, b)

    def logits_fn(x, a):
        return x.reshape(x.shape[0], -1) @ jnp.asarray(w_v, x.dtype) + a @ jnp.asarray(w_a, a.dtype)

    adv_v, adv_a = attacks.fgsm(logits_fn, jnp.asarray(image), jnp.asarray(audio), jnp.asarray(label),
                                eps_visual=0.03, eps_audio=0.05)
    logits = image.reshape(b, -1) @ w_v + audio @ w_a
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dlogits = (p - np.eye(c)[label]) / b                     # d mean CE / d logits
    g_v = (dlogits @ w_v.T).reshape(image.shape)
    g_a = dlogits @ w_a.T
    np.testing.assert_allclose(adv_v, np.clip(image + 0.03 * np.sign(g_v), 0, 1), atol=1e-6)
    np.testing.assert_allclose(adv_a, np.clip(audio + 0.05 * np.sign(g_a), -1, 1), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("method,variant,independent", [
    ("fgsm", "standard", True), ("pgd", "standard", True), ("mim", "standard", True),
    ("mim", "original", False)])
def test_batch_mates(small, method, variant, independent):
    """An example's adversarial result does not depend on its batch-mates (but the original MIM's does)."""
    fns, image, audio, label = small
    kw = dict(eps_visual=0.006, eps_audio=0.006, units="normalized", variant=variant)
    full_v, full_a = attacks.attack(method, fns, image, audio, label, **kw)
    alone_v, alone_a = attacks.attack(method, fns, image[:2], audio[:2], label[:2], **kw)
    same = (np.allclose(full_v[:2], alone_v, atol=1e-6) and np.allclose(full_a[:2], alone_a, atol=1e-6))
    assert same == independent


def test_one_trace_per_shape(small):
    fns, image, audio, label = small
    kw = dict(eps_visual=0.006, eps_audio=0.006, units="normalized")
    attacks.pgd(fns, image, audio, label, **kw)
    before = attack_api._run._cache_size()
    attacks.pgd(fns, 1 - image, -audio, label, **kw)
    attacks.pgd(fns, image, audio, label, eps_visual=0.003, eps_audio=0.009, units="normalized")
    assert attack_api._run._cache_size() == before


@pytest.mark.slow
@pytest.mark.parametrize("method, program, options", [
    ("apgd", "_run_apgd", dict(steps=3)), ("square", "_run_square", dict(queries=3)), ("fab", "_fab_search", dict(steps=2))])
def test_strong_attacks_trace_once_per_shape(small, method, program, options):
    """Called again with the same shapes (new values, another eps, another key, a new ModelFns of the same
    model), a strong attack reuses its compiled program."""
    fns, image, audio, label = small
    run = getattr(attacks, method)
    run(fns, image, audio, label, eps_visual=0.006, eps_audio=0.006, units="normalized", key=jax.random.key(0),
        **options)
    before = getattr(attack_api, program)._cache_size()
    rebound = type(fns)(fns.module, fns.variables)
    run(rebound, 1 - image, -audio, label, eps_visual=0.003, eps_audio=0.009, units="normalized",
        key=jax.random.key(1), **options)
    assert getattr(attack_api, program)._cache_size() == before


@pytest.mark.slow
def test_unrolled_loop_equals_fori_loop(small):
    fns, image, audio, label = small
    kw = dict(eps_visual=0.006, eps_audio=0.006, units="normalized")
    a = attacks.mim(fns, image, audio, label, loop="fori", **kw)
    b = attacks.mim(fns, image, audio, label, loop="unroll", **kw)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-6)


@pytest.mark.slow
def test_random_start_and_restarts_stay_in_the_ball(small):
    fns, image, audio, label = small
    key = jax.random.key(3)
    kw = dict(eps_visual=0.002, eps_audio=0.002, random_start=True, steps=3)
    best = attacks.pgd(fns, image, audio, label, key=key, restarts=3, **kw)
    for adv, clean in zip(best, (image, audio)):
        assert float(jnp.abs(adv - clean).max()) <= 0.002 + TOL
    correct = lambda adv: np.asarray(fns(*adv)[0].argmax(-1) == label)  # noqa: E731
    runs = [correct(attacks.pgd(fns, image, audio, label, key=k, **kw))
            for k in jax.random.split(key, 3)]
    # an example survives the restarts only if it survives every run
    np.testing.assert_array_equal(correct(best), np.logical_and.reduce(runs))
    with pytest.raises(ValueError, match="PRNG key"):
        attacks.pgd(fns, image, audio, label, eps_visual=0.01, eps_audio=0.0, random_start=True)


def test_ce_plus_cos_loss_changes_the_attack(small):
    fns, image, audio, label = small
    kw = dict(eps_visual=0.006, eps_audio=0.006, units="normalized")
    ce = attacks.pgd(fns, image, audio, label, **kw)
    cos = attacks.pgd(fns, image, audio, label, loss="ce+cos", cos_weight=10.0, **kw)
    assert not np.array_equal(np.asarray(ce[1]), np.asarray(cos[1]))


def test_normalized_units_are_per_channel_pixel_eps():
    assert attacks.pixel_eps(0.006, "normalized") == pytest.approx(tuple(0.006 * s for s in IMAGENET_STD))
    assert attacks.pixel_eps(0.006, "pixel") == (0.006, 0.006, 0.006)
    with pytest.raises(ValueError, match="unknown units"):
        attacks.image_space("bits")


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["standard", "original"])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_one_program_for_pgd_and_mim_equals_each(small, variant, setting):
    """`run_attack(..., mim=flag)` (what the evaluation compiles once per setting for both methods) gives
    exactly the iterates of PGD and of MIM compiled on their own."""
    from avjax.attacks.core import run_attack
    fns, image, audio, label = small
    eps_v, eps_a = SETTINGS[setting]
    opts = dict(eps_visual=eps_v, eps_audio=eps_a, units="normalized", variant=variant)
    shared = jax.jit(lambda flag: run_attack(fns, image, audio, label, eps_v, eps_a,
                                             attacks.make_config("mim", **opts), mim=flag))
    for method, flag in (("pgd", False), ("mim", True)):
        alone = jax.jit(lambda: run_attack(fns, image, audio, label, eps_v, eps_a,
                                           attacks.make_config(method, **opts)))()
        for x, y in zip(shared(jnp.bool_(flag)), alone):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="selects between PGD and MIM"):
        run_attack(fns, image, audio, label, eps_v, eps_a, attacks.make_config("fgsm", **opts), mim=True)


@pytest.mark.slow
@pytest.mark.parametrize("variant,setting", [("standard", "xA"), ("standard", "xV"), ("standard", "xAV"),
                                             ("original", "xAV")])
def test_given_clean_gradients_replace_the_first_step(small, variant, setting):
    """FGSM, PGD and MIM started from the clean-point gradients computed once in another program (what the
    evaluation does per batch) give the adversarial examples they compute on their own (float64, where
    the two programs' rounding cannot flip a gradient's sign)."""
    from avjax.attacks.core import clean_gradients, run_attack
    eps_v, eps_a = SETTINGS[setting]
    opts = dict(eps_visual=eps_v, eps_audio=eps_a, units="normalized", variant=variant)
    with jax.enable_x64(True):
        fns, image, audio, label = jax.tree.map(
            lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, small)
        gradients, (_, logits) = jax.jit(lambda: clean_gradients(fns, image, audio, label,
                                                                 attacks.make_config("fgsm", **opts)))()
        np.testing.assert_allclose(logits, fns(image, audio)[0], rtol=1e-9, atol=1e-9)
        # PGD and MIM through the program they share (test_one_program_for_pgd_and_mim_equals_each)
        fgsm, mim = attacks.make_config("fgsm", **opts), attacks.make_config("mim", **opts)
        for cfg, flag in ((fgsm, None), (mim, jnp.bool_(False)), (mim, jnp.bool_(True))):
            given = jax.jit(lambda g, f: run_attack(fns, image, audio, label, eps_v, eps_a, cfg, first_gradients=g,
                                                    mim=f))
            alone = jax.jit(lambda f: run_attack(fns, image, audio, label, eps_v, eps_a, cfg, mim=f))(flag)
            for x, y in zip(given(gradients, flag), alone):
                assert x.dtype == jnp.float64
                np.testing.assert_array_equal(x, y)
            # a wrong first gradient changes the result: the given one is really used
            flipped = jax.tree.map(lambda g: -g, gradients)
            assert not all(np.array_equal(x, y) for x, y in zip(given(flipped, flag), alone))
