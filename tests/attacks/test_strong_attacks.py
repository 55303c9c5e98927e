"""APGD, Square and the standard protocol: balls and bounds, closed forms, budgets, masked gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import attacks
from avjax.attacks import apgd_attack
from avjax.attacks import losses
from avjax.attacks.threat import pixel_eps
from avjax.evaluation import common, protocol

SETTINGS = {"xA": (0.0, 0.03), "xV": (0.03, 0.0), "xAV": (0.015, 0.015)}


def _in_ball(adv_v, adv_a, image, audio, eps_v, eps_a, units):
    per_channel = np.asarray(pixel_eps(eps_v, units))
    dv = np.abs(np.asarray(adv_v) - np.asarray(image))
    assert np.all(dv <= per_channel + 1e-6), (dv.max(), per_channel)
    assert np.all(np.abs(np.asarray(adv_a) - np.asarray(audio)) <= eps_a + 1e-6)
    assert np.all((np.asarray(adv_v) >= 0) & (np.asarray(adv_v) <= 1))
    assert np.all((np.asarray(adv_a) >= -1) & (np.asarray(adv_a) <= 1))
    if eps_v == 0:
        np.testing.assert_array_equal(adv_v, image)
    if eps_a == 0:
        np.testing.assert_array_equal(adv_a, audio)


@pytest.mark.slow
@pytest.mark.parametrize("setting,units", [("xA", "pixel"), ("xAV", "normalized")])
def test_apgd_and_square_stay_in_ball_and_bounds(small, setting, units):
    fns, image, audio, label = small
    eps_v, eps_a = SETTINGS[setting]
    key = jax.random.key(1)
    adv = attacks.apgd(fns, image, audio, label, eps_visual=eps_v, eps_audio=eps_a, key=key, units=units, steps=6,
                       loss="dlr", targeted=True, target_classes=2)
    _in_ball(*adv, image, audio, eps_v, eps_a, units)
    adv, queries = attacks.square(fns, image, audio, label, eps_visual=eps_v, eps_audio=eps_a, key=key,
                                  units=units, queries=25)
    _in_ball(*adv, image, audio, eps_v, eps_a, units)
    assert np.all(np.asarray(queries) <= 25)


def _linear_model(dim_v=(4, 4, 3), dim_a=32, classes=4, seed=0, margin=None):
    """logits = x_v W_v + x_a W_a + b; classes >= 2 with class 0 kept ahead by a large bias when `margin`."""
    k = jax.random.split(jax.random.key(seed), 2)
    w_v = jax.random.normal(k[0], (int(np.prod(dim_v)), classes))
    w_a = jax.random.normal(k[1], (dim_a, classes))
    bias = jnp.zeros(classes) if margin is None else jnp.array([margin] + [0.0] * (classes - 1))

    def logits_fn(image, audio):
        return image.reshape(image.shape[0], -1) @ w_v + audio @ w_a + bias

    return logits_fn, w_v, w_a


def test_apgd_reaches_the_closed_form_optimum_of_a_linear_model():
    """Two classes, class 0 ahead by more than any perturbation can change (yet not so far that float32
    gradients vanish): CE rises with (w_1 - w_0) . x, maximised at x0 + eps sign(w_1 - w_0)."""
    logits_fn, w_v, w_a = _linear_model(classes=2, margin=8.0)
    image = jnp.full((3, 4, 4, 3), 0.5)
    audio = jnp.zeros((3, 32))
    label = jnp.zeros(3, jnp.int32)
    eps_v, eps_a = 0.05, 0.02
    adv_v, adv_a = attacks.apgd(logits_fn, image, audio, label, eps_visual=eps_v, eps_audio=eps_a,
                                key=jax.random.key(0), steps=10)
    want_v = 0.5 + eps_v * np.sign(np.asarray(w_v[:, 1] - w_v[:, 0])).reshape(4, 4, 3)
    want_a = eps_a * np.sign(np.asarray(w_a[:, 1] - w_a[:, 0]))
    np.testing.assert_allclose(adv_v, np.broadcast_to(want_v, adv_v.shape), atol=1e-6)
    np.testing.assert_allclose(adv_a, np.broadcast_to(want_a, adv_a.shape), atol=1e-6)
    pgd_v, pgd_a = attacks.pgd(logits_fn, image, audio, label, eps_visual=eps_v, eps_audio=eps_a, steps=10)
    np.testing.assert_allclose(pgd_v, adv_v, atol=1e-6)
    np.testing.assert_allclose(pgd_a, adv_a, atol=1e-6)


def test_apgd_checkpoint_schedule_is_the_reference_one():
    # reference code, n_iter = 100: first check after 22 iterations, then 19, 16, 13, 10, 7, 6, 6 ...
    ends = np.flatnonzero(apgd_attack.checkpoints(100)) + 1
    np.testing.assert_array_equal(np.diff(np.concatenate([[0], ends]))[:8], [22, 19, 16, 13, 10, 7, 6, 6])


def _reference_apgd(loss_fn, x0, eps, steps, lo=-1.0, hi=1.0):
    """APGD-CE written out step by step as the reference code (one example, one flat input, numpy),
    gradients from jax.grad: step 2 eps, momentum 0.75 from x_k - x_{k-1}, checkpoints and restarts."""
    grad = lambda x: np.asarray(jax.grad(loss_fn)(jnp.asarray(x)))  # noqa: E731
    f = lambda x: float(loss_fn(jnp.asarray(x)))  # noqa: E731
    proj = lambda x: np.clip(np.clip(x, x0 - eps, x0 + eps), lo, hi)  # noqa: E731
    x, x_old, g = x0.copy(), x0.copy(), grad(x0)
    loss = f(x)
    best_x, best_g, best_loss = x.copy(), g.copy(), loss
    eta, increases, best_at_check, halved_at_check = 2.0, 0, best_loss, True
    intervals = apgd_attack.checkpoints(steps)
    for i in range(steps):
        alpha = 1.0 if i == 0 else 0.75
        momentum = x - x_old
        x_old = x.copy()
        z = proj(x + eta * eps * np.sign(g))
        x = proj(x + alpha * (z - x) + (1 - alpha) * momentum)
        new_loss, g = f(x), grad(x)
        increases += new_loss > loss
        loss = new_loss
        if loss > best_loss:
            best_x, best_g, best_loss = x.copy(), g.copy(), loss
        if intervals[i]:
            halve = increases <= intervals[i] * 0.75 or (not halved_at_check and best_at_check >= best_loss)
            if halve:
                eta, x, g = eta / 2, best_x.copy(), best_g.copy()
            increases, best_at_check, halved_at_check = 0, best_loss, halve
    return best_x


@pytest.mark.slow
def test_apgd_follows_the_reference_algorithm_step_by_step():
    """From the clean input (no random start), with a concave loss whose maximum lies inside the ball,
    avjax's APGD ends at the reference algorithm's best point."""
    w = jax.random.normal(jax.random.key(3), (16,))
    c = 0.3 * jnp.tanh(jax.random.normal(jax.random.key(4), (16,)))

    def logits_fn(image, audio):   # CE(label 0) = softplus(bowl - 1): maximal near c, never misclassified
        bowl = -jnp.sum((audio - c) ** 2, -1) * 4.0 + 0.1 * jnp.sin(audio @ w)
        return jnp.stack([jnp.ones_like(bowl), bowl], -1)

    audio = jnp.zeros((1, 16))
    image = jnp.full((1, 2, 2, 3), 0.5)
    label = jnp.zeros(1, jnp.int32)
    eps = 0.25
    _, adv_a = attacks.apgd(logits_fn, image, audio, label, eps_visual=0.0, eps_audio=eps, key=jax.random.key(0),
                            steps=20, random_start=False)
    loss = lambda a: -jax.nn.log_softmax(logits_fn(image, a[None]))[0, 0]  # noqa: E731
    want = _reference_apgd(loss, np.zeros(16, np.float32), eps, 20)
    np.testing.assert_allclose(np.asarray(adv_a[0]), want, atol=1e-5)


def test_dlr_losses_closed_form_and_invariance():
    logits = jnp.array([[3.0, 1.0, 0.5, -2.0], [0.0, 4.0, 1.0, 2.0]])
    label = jnp.array([0, 0])
    np.testing.assert_allclose(losses.dlr(logits, label), [-(3 - 1) / (3 - 0.5), -(0 - 4) / (4 - 1)], rtol=1e-6)
    np.testing.assert_allclose(losses.dlr(5 * logits + 2, label), losses.dlr(logits, label), rtol=1e-5)
    target = jnp.array([2, 1])
    np.testing.assert_allclose(losses.dlr_targeted(logits, label, target),
                               [-(3 - 0.5) / (3 - 0.5 * (0.5 - 2)), -(0 - 4) / (4 - 0.5 * (1 + 0))], rtol=1e-6)
    with pytest.raises(ValueError, match="at least 3 classes"):
        losses.dlr(logits[:, :2], label)


@pytest.mark.slow
def test_square_respects_its_budget_and_is_reproducible(small):
    fns, image, audio, label = small
    run = lambda seed: attacks.square(fns, image, audio, label, eps_visual=0.01, eps_audio=0.0,  # noqa: E731
                                      key=jax.random.key(seed), queries=40)
    (adv_v, adv_a), queries = run(3)
    (again_v, _), again_q = run(3)
    np.testing.assert_array_equal(adv_v, again_v)
    np.testing.assert_array_equal(queries, again_q)
    queries = np.asarray(queries)
    assert queries.min() >= 1 and queries.max() <= 40
    fooled = np.asarray(fns(adv_v, adv_a)[0].argmax(-1) != label)
    assert np.all(queries[~fooled] == 40)      # an unbroken example spends the whole budget, no more


@pytest.mark.slow
def test_apgd_example_does_not_depend_on_batch_mates(small):
    fns, image, audio, label = small
    kw = dict(eps_visual=0.01, eps_audio=0.01, key=jax.random.key(0), steps=5)
    adv_v, _ = attacks.apgd(fns, image, audio, label, **kw)
    other_v = image.at[1:].set(image[::-1][:-1])
    other_a = audio.at[1:].set(audio[::-1][:-1])
    adv2_v, _ = attacks.apgd(fns, other_v, other_a, label.at[1:].set(label[::-1][:-1]), **kw)
    np.testing.assert_allclose(adv2_v[0], adv_v[0], atol=1e-5)


def _spec(**overrides):
    base = dict(units="pixel", mean=(0.0,) * 3, std=(1.0,) * 3, eps_audio_only=0.1, eps_visual_only=0.1,
                eps_joint=0.1, apgd_steps=10, apgd_restarts=1, target_classes=3, square_queries=300,
                square_p_init=0.8, adaptive=(), unroll=1, checklist=True, large_eps_factor=4.0,
                max_large_eps_accuracy=5.0, tolerance=1.0, seed=0, settings_run=("xA", "xV", "xAV"))
    return protocol.ProtocolSpec(**{**base, **overrides})


_attack_once = jax.jit(protocol.attack_once, static_argnames=("spec", "kind", "setting"))


def _run_protocol(fns, batch, spec, names, settings=(0, 1, 2)):
    correct = {"clean": np.asarray(common.correctness(fns, batch["image"], batch["audio"], batch["label"]))}
    for s in settings:
        for name in names:
            kind, factor = protocol.program_of(name, spec, s)
            eps_v, eps_a = (np.float32(e * factor) for e in spec.settings()[s])
            correct[(s, name)] = np.asarray(_attack_once(fns, batch, eps_v, eps_a, jax.random.key(s),
                                                         spec=spec, kind=kind, setting=s))
        correct[(s, "zero_gradient")] = np.asarray(protocol.zero_gradient(fns, batch, setting=s))
    return protocol.summarize(correct, names, spec)


@pytest.mark.slow
def test_masked_gradients_fool_white_box_not_square_and_the_checklist_flags_it():
    """A model that reads its input through stop_gradient: every white-box gradient is 0."""
    image = jax.random.uniform(jax.random.key(0), (6, 6, 6, 3), minval=0.3, maxval=0.7)
    audio = jax.random.uniform(jax.random.key(1), (6, 64), minval=-0.5, maxval=0.5)
    w = jax.random.normal(jax.random.key(2), (6 * 6 * 3 + 64,))
    eps = 0.1
    lead = 0.3 * eps * float(jnp.abs(w).sum())  # the optimal perturbation overturns it, random noise does not

    def masked(img, aud):
        delta = jax.lax.stop_gradient(jnp.concatenate([(img - image).reshape(6, -1), aud - audio], -1))
        runner_up = delta @ w
        return jnp.stack([jnp.full_like(runner_up, lead), runner_up, runner_up - 50, runner_up - 60], -1)

    batch = {"image": image, "audio": audio, "label": jnp.zeros(6, jnp.int32)}
    spec = _spec()
    names = spec.attack_list(has_memory=False, has_transfer=False)
    res = _run_protocol(attacks.core.as_model_fns(masked), batch, spec, names, settings=(2,))
    xav = res["settings"]["xAV"]
    assert res["clean"] == 100
    assert xav["apgd-ce"] == 100 and xav["apgd-t"] == 100      # white-box attacks fail ...
    assert xav["square"] <= 50                                    # ... the score-based one does not
    assert xav["worst"] <= xav["square"]
    flagged = {(c["setting"], c["check"]) for c in protocol.failed_checks(res["checklist"])}
    assert ("xAV", "black_box") in flagged and ("xAV", "zero_gradient") in flagged
    assert xav["zero_gradient"] == 100


def test_zero_gradient_check_fires_in_the_setting_of_the_masked_modality_only():
    """Audio read through stop_gradient, the frame not: flagged under xA (and xAV), not under xV; an unmasked
    model is never flagged (its margin's gradient is never exactly zero)."""
    fns, image, audio, label = _mlp()
    batch = {"image": image, "audio": audio, "label": label}
    masked = attacks.core.as_model_fns(lambda img, aud: fns(img, jax.lax.stop_gradient(aud))[0])
    zero = {s: np.asarray(protocol.zero_gradient(masked, batch, setting=i)) for i, s in enumerate(("xA", "xV", "xAV"))}
    assert zero["xA"].all() and zero["xAV"].all() and not zero["xV"].any()
    assert not any(np.asarray(protocol.zero_gradient(fns, batch, setting=i)).any() for i in range(3))
    checks = protocol._checks("xA", {"apgd-ce": 50.0, "apgd-ce/more_steps": 50.0, "white_box": 50.0, "square": 60.0,
                                     "zero_gradient": 100.0}, _spec(), False, False)
    assert [c["check"] for c in protocol.failed_checks(checks)] == ["zero_gradient"]
    assert [c["check"] for c in checks if c["passed"] is None] == ["transfer"]   # no baseline: not run


def _mlp(seed=0, dims=(6, 6, 3), length=64, classes=5, batch=8):
    """A small nonlinear AV model that reads both inputs (cheap to compile) for protocol invariants."""
    k = jax.random.split(jax.random.key(seed), 3)
    w1 = jax.random.normal(k[0], (int(np.prod(dims)) + length, 32)) * 0.5
    w2 = jax.random.normal(k[1], (32, classes))

    def logits_fn(image, audio):
        x = jnp.concatenate([image.reshape(image.shape[0], -1) - 0.5, audio], -1)
        return jnp.tanh(x @ w1) @ w2

    image = jax.random.uniform(k[2], (batch,) + dims)
    audio = jax.random.uniform(jax.random.fold_in(k[2], 1), (batch, length), minval=-0.5, maxval=0.5)
    return attacks.core.as_model_fns(logits_fn), image, audio, logits_fn(image, audio).argmax(-1)


@pytest.mark.slow
def test_worst_case_is_never_better_than_any_member():
    fns, image, audio, label = _mlp()
    batch = {"image": image, "audio": audio, "label": label}
    spec = _spec(eps_joint=0.02, apgd_steps=5, square_queries=20, large_eps_factor=3.0)
    names = spec.attack_list(has_memory=False, has_transfer=False)
    res = _run_protocol(fns, batch, spec, names, settings=(2,))
    row = res["settings"]["xAV"]
    for name in names:
        if name not in protocol.OUT_OF_BALL:
            assert row["worst"] <= row[name], name
    assert row["white_box"] <= min(row["apgd-ce"], row["apgd-t"])
    assert row["worst"] < res["clean"]                       # the attacks do something on this model
    assert {c["check"] for c in res["checklist"]} == {"more_steps", "large_eps", "black_box", "zero_gradient",
                                                      "transfer", "rescore"}
    assert all(c["passed"] for c in res["checklist"] if c["check"] in ("zero_gradient", "rescore"))


@pytest.mark.slow
def test_highest_loss_point_has_the_highest_source_loss_and_the_transfer_attack_uses_it():
    """point='highest_loss' returns, per example, the run's highest-loss iterate whether or not an earlier one
    already fooled the model (AutoAttack's point is the first success, a thin-margin point that rarely
    transfers); the protocol's transfer attack asks for it."""
    fns, image, audio, label = _mlp(seed=3)
    kw = dict(eps_visual=0.05, eps_audio=0.05, key=jax.random.key(0), steps=20, restarts=2)
    first = attacks.apgd(fns, image, audio, label, **kw)
    highest = attacks.apgd(fns, image, audio, label, point="highest_loss", **kw)

    def ce(point):
        logits = fns(*point)[0]
        return np.asarray(losses.per_example_loss("ce", logits, {}, label))

    fooled = np.asarray(fns(*first)[0].argmax(-1) != label)
    assert fooled.any(), "the attack must fool some examples for the comparison to mean something"
    assert np.all(ce(highest) >= ce(first) - 1e-5)
    assert np.any(ce(highest)[fooled] > ce(first)[fooled] + 1e-3)   # past the first success
    assert float(jnp.max(jnp.abs(highest[0] - image))) <= 0.05 + 1e-6          # still in the ball
    assert float(jnp.max(jnp.abs(highest[1] - audio))) <= 0.05 + 1e-6
    assert _spec().parameters("transfer")["point"] == "highest_loss"
    with pytest.raises(ValueError, match="APGD point must be one of"):
        attacks.apgd_config(eps_visual=0.1, eps_audio=0.1, point="last")


def test_every_protocol_attack_draws_its_own_random_start():
    root = jax.random.key(0)
    keys = {name: jax.random.key_data(protocol.attack_key(root, 0, 2, name))
            for name in ("apgd-ce", "apgd-t", "apgd-ce/more_steps", "large_eps", "transfer", "square")}
    assert len({tuple(np.asarray(k).ravel()) for k in keys.values()}) == len(keys)
    np.testing.assert_array_equal(jax.random.key_data(protocol.attack_key(root, 0, 2, "apgd-ce")), keys["apgd-ce"])


@pytest.mark.slow
def test_square_is_effective_on_waveforms_a_high_pass_net_hears():
    """A waveform net of zero-mean (high-pass) filters, as convolutions with BatchNorm are: a window of one sign is
    a DC step it does not hear (Square then fooled none of these examples); square waves of random period do."""
    k = jax.random.split(jax.random.key(0), 3)
    kernel = jax.random.normal(k[0], (4, 1, 9)) / 3
    kernel = kernel - kernel.mean(-1, keepdims=True)
    w = jax.random.normal(k[1], (4, 5))

    def audio_net(image, audio):
        h = jax.lax.conv_general_dilated(audio[:, None, :], kernel, (1,), "SAME")
        return jnp.mean(jax.nn.relu(h), -1) * 10 @ w

    image = jnp.zeros((32, 4, 4, 3))
    audio = jax.random.uniform(k[2], (32, 4096), minval=-0.3, maxval=0.3)
    label = audio_net(image, audio).argmax(-1)
    adv, _ = attacks.square(audio_net, image, audio, label, eps_visual=0.0, eps_audio=0.2, key=jax.random.key(1),
                            queries=500)
    _in_ball(*adv, image, audio, 0.0, 0.2, "pixel")
    noise = jnp.clip(audio + 0.2 * jnp.sign(jax.random.normal(k[0], audio.shape)), -1, 1)
    assert float(jnp.mean(audio_net(image, noise).argmax(-1) == label)) == 1.0   # random vertices do nothing
    assert float(jnp.mean(audio_net(*adv).argmax(-1) == label)) <= 0.5


def test_square_waves_span_the_octaves_at_the_ball_vertices():
    from avjax.attacks.square_attack import square_wave
    pos = jnp.broadcast_to(jnp.arange(64)[None], (256, 64))
    wave = np.asarray(square_wave(jax.random.key(0), pos, 6, jnp.float32))
    assert set(np.unique(wave)) == {-1.0, 1.0}
    changes = [np.flatnonzero(np.diff(row) != 0) for row in wave]
    runs = {int(np.diff(c).min()) for c in changes if c.size >= 2}
    assert {1, 2, 4, 8} <= runs                 # half periods of every octave up to the window
    longest = max(int(np.diff(np.concatenate([[-1], c, [63]])).max()) for c in changes)
    assert longest >= 32                        # and long runs of one sign, as the windows had before


def test_a_check_misses_by_more_than_one_example_before_it_fails():
    row = {"apgd-ce": 25.0, "apgd-ce/more_steps": 22.92, "white_box": 6.25, "square": 72.92, "large_eps": 0.0}
    on_48 = protocol._checks("xAV", row, _spec(), False, True, examples=48)      # one example: 2.08 points
    assert not protocol.failed_checks(on_48)
    on_480 = protocol._checks("xAV", row, _spec(), False, True, examples=480)    # ten examples: masking flagged
    assert [c["check"] for c in protocol.failed_checks(on_480)] == ["more_steps"]
