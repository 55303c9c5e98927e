"""FAB-L-inf: on linear models the minimal perturbation is known in closed form, in each modality's eps units."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import attacks
from avjax.attacks.fab_attack import linf_projection

B, L, S = 6, 64, 4


def linear_model(w_v, w_a, bias):
    """logits = W_v . pixels + W_a . audio + bias, K classes (image (B, S, S, 3), audio (B, L))."""
    def logits_fn(image, audio):
        return image.reshape(image.shape[0], -1) @ w_v.T + audio @ w_a.T + bias
    return logits_fn


def exact_radius(w_v, w_a, bias, image, audio, label, eps_v, eps_a, classes=None):
    """min over j != y of (f_y - f_j) / (eps_v ||w_vj - w_vy||_1 + eps_a ||w_aj - w_ay||_1): the L-inf
    distance (in eps units) to misclassification of a linear model when no input bound is active.
    `classes` (B, T): only the boundaries of these classes (FAB-T's targets)."""
    logits = np.asarray(linear_model(w_v, w_a, bias)(image, audio))
    out = []
    for i, y in enumerate(np.asarray(label)):
        js = [j for j in range(logits.shape[1]) if j != y] if classes is None else classes[i]
        r = [(logits[i, y] - logits[i, j]) / (eps_v * np.abs(w_v[j] - w_v[y]).sum() + eps_a * np.abs(w_a[j] - w_a[y]).sum())
             for j in js]
        out.append(min(r))
    return np.asarray(out)


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    k = 3
    w_v = rng.normal(size=(k, S * S * 3)).astype(np.float32)
    w_a = rng.normal(size=(k, L)).astype(np.float32)
    image = jnp.asarray(rng.uniform(0.4, 0.6, (B, S, S, 3)), jnp.float32)
    audio = jnp.asarray(rng.uniform(-0.1, 0.1, (B, L)), jnp.float32)
    bias = np.zeros(k, np.float32)
    logits = np.asarray(linear_model(w_v, w_a, bias)(image, audio))
    label = jnp.asarray(logits.argmax(-1))
    return w_v, w_a, bias, image, audio, label


@pytest.mark.parametrize("eps_v, eps_a", [(0.0, 0.01), (0.01, 0.0), (0.01, 0.005)])
def test_fab_finds_the_closed_form_minimal_perturbation_of_a_linear_model(problem, eps_v, eps_a):
    w_v, w_a, bias, image, audio, label = problem
    fns = linear_model(jnp.asarray(w_v) * (eps_v > 0), jnp.asarray(w_a) * (eps_a > 0), bias)
    label = jnp.argmax(fns(image, audio), -1)  # the model of this setting reads only the attacked modality
    want = exact_radius(w_v * (eps_v > 0), w_a * (eps_a > 0), bias, image, audio, label, eps_v or 1.0, eps_a or 1.0)
    # a budget of 10x the largest radius: every example can be fooled without touching the input bounds
    scale = float(np.max(want)) * 10
    _, _, radius = attacks.fab(fns, image, audio, label, eps_visual=eps_v * scale, eps_audio=eps_a * scale,
                               key=jax.random.key(0), steps=30, return_radius=True)
    np.testing.assert_allclose(np.asarray(radius) * scale, want, rtol=0.02)


def test_a_fixed_budget_returns_an_adversarial_inside_the_ball_or_the_clean_input(problem):
    w_v, w_a, bias, image, audio, label = problem
    fns = linear_model(jnp.asarray(w_v), jnp.asarray(w_a), bias)
    want = exact_radius(w_v, w_a, bias, image, audio, label, 0.01, 0.005)
    budget = float(np.median(want))      # half the examples within reach
    adv_v, adv_a = attacks.fab(fns, image, audio, label, eps_visual=0.01 * budget, eps_audio=0.005 * budget,
                               key=jax.random.key(0), steps=30)
    assert float(jnp.max(jnp.abs(adv_v - image))) <= 0.01 * budget * (1 + 1e-5)
    assert float(jnp.max(jnp.abs(adv_a - audio))) <= 0.005 * budget * (1 + 1e-5)
    fooled = np.asarray(jnp.argmax(fns(adv_v, adv_a), -1) != label)
    reachable = want < budget * 0.98
    assert np.all(fooled[reachable]) and not np.any(fooled[want > budget * 1.02])
    for i in np.flatnonzero(~fooled):
        assert np.array_equal(adv_v[i], image[i]) and np.array_equal(adv_a[i], audio[i])


def test_linf_projection_is_the_smallest_step_that_reaches_the_plane_inside_the_box():
    w = jnp.asarray([[1.0, -2.0, 0.5], [1.0, 1.0, 1.0]])
    c = jnp.asarray([-1.75, -3.0])
    lo, hi = jnp.full((2, 3), -1.0), jnp.asarray([[1.0, 1.0, 1.0], [0.5, 1.0, 1.0]])
    d = linf_projection(w, c, lo, hi)
    # example 0: r (1 + 2 + 0.5) = 1.75 -> r = 0.5; example 1: 0.5 + 2 r = 3 -> r = 1.25 > box: the corner
    np.testing.assert_allclose(d[0], [0.5, -0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(d[1], [0.5, 1.0, 1.0], atol=1e-6)
    # from the other side of the plane (AutoAttack's projection is two-sided): back onto it; on it: no step
    d = linf_projection(w, jnp.asarray([0.5, 0.0]), lo, hi)
    np.testing.assert_allclose(d[0], [-1 / 7, 1 / 7, -1 / 7], atol=1e-6)   # 0.5 - r (1 + 2 + 0.5) = 0
    assert np.array_equal(d[1], np.zeros(3))


@pytest.mark.parametrize("target_classes", [1, 2, 4])
def test_fab_t_finds_the_closed_form_minimal_perturbation_towards_its_targets(target_classes):
    """FAB-T searches only towards the top `target_classes` runner-up classes: its radius is the closed-form
    distance to the nearest of their boundaries (all K - 1 targets: the untargeted minimum)."""
    rng = np.random.default_rng(4)
    k, eps_v, eps_a = 5, 0.01, 0.005
    scale = np.asarray([1, 1, 1, 1, 3], np.float32)[:, None]  # one class with a steep boundary: often nearest
    w_v = (rng.normal(size=(k, S * S * 3)) * scale).astype(np.float32)
    w_a = (rng.normal(size=(k, L)) * scale).astype(np.float32)
    bias = np.zeros(k, np.float32)
    image = jnp.asarray(rng.uniform(0.4, 0.6, (B, S, S, 3)), jnp.float32)
    audio = jnp.asarray(rng.uniform(-0.1, 0.1, (B, L)), jnp.float32)
    fns = linear_model(jnp.asarray(w_v), jnp.asarray(w_a), bias)
    logits = np.asarray(fns(image, audio))
    label = jnp.asarray(logits.argmax(-1))
    runner_up = np.argsort(-logits, -1)[:, 1:1 + target_classes]
    want = exact_radius(w_v, w_a, bias, image, audio, label, eps_v, eps_a, classes=runner_up)
    if target_classes == 1:  # the runner-up's boundary is not always the nearest: targeting matters here
        assert np.any(want > exact_radius(w_v, w_a, bias, image, audio, label, eps_v, eps_a) * 1.05)
    scale = float(np.max(want)) * 10
    _, _, radius = attacks.fab(fns, image, audio, label, eps_visual=eps_v * scale, eps_audio=eps_a * scale,
                               key=jax.random.key(0), steps=30, targeted=True, target_classes=target_classes,
                               return_radius=True)
    np.testing.assert_allclose(np.asarray(radius) * scale, want, rtol=0.02)
