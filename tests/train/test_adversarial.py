"""Adversarial training: the batch is attacked in its threat's eps ball and ranges (the other input untouched), the
step trains on exactly those inputs with no gradient through the attack, and the config resolves each AT row's
eps from the setting it is evaluated in."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax.attacks.threat import pixel_eps
from avjax.errors import ConfigError
from avjax.config_files import load_config
from avjax.runs import defense_of, run_config
from avjax.train import adversarial
from avjax.train.loop import training_config_hash
from avjax.train.steps import make_steps
from tests.train.common import initial_run

B, SIZE, AUDIO = 4, 32, 4096


@pytest.fixture(scope="module")
def setup():
    config, rc, model, optimizer, state = initial_run("defense=at,runlocal", "at_av", SIZE, AUDIO)
    kx, ka, kl = jax.random.split(jax.random.key(1), 3)
    batch = {"image": jax.random.uniform(kx, (B, SIZE, SIZE, 3)),
             "audio": jax.random.uniform(ka, (B, AUDIO), minval=-0.9, maxval=0.9),
             "label": jax.random.randint(kl, (B,), 0, rc.model.num_classes)}
    return config, model, optimizer, state, batch


def _adv_cfg(config, threat, **overrides):
    c = config.copy_and_resolve_references()
    with c.unlocked():
        c.train.adversarial.update(dict(threat=threat, **overrides))
        from avjax.runs import adversarial_threat_model
        adversarial_threat_model(c)
    return c.train.adversarial


@pytest.mark.slow
@pytest.mark.parametrize("threat,units,bn", [("A", "pixel", "train"), ("V", "pixel", "eval"),
                                             ("AV", "normalized", "train")])
def test_the_attacked_batch_stays_in_its_ball_and_range_and_the_other_input_is_untouched(setup, threat, units, bn):
    config, model, _, state, batch = setup
    cfg = _adv_cfg(config, threat, bn=bn)
    cfg.units = units   # the threat model's units as the evaluation gives them
    image, audio = jax.jit(lambda v, b, k: adversarial.adversarial_inputs(model, v, b, k, cfg))(
        state.variables(), batch, jax.random.key(2))
    if "V" in threat:
        bound = np.asarray(pixel_eps(cfg.eps_visual, units, cfg.std), np.float32) * (1 + 1e-5)
        dv = np.abs(np.asarray(image - batch["image"]))
        assert np.all(dv <= bound) and dv.max() > 0.5 * bound.min()
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    else:
        np.testing.assert_array_equal(image, batch["image"])
    if "A" in threat:
        da = np.abs(np.asarray(audio - batch["audio"]))
        assert np.all(da <= cfg.eps_audio * (1 + 1e-5)) and da.max() > 0.5 * cfg.eps_audio
        assert float(jnp.abs(audio).max()) <= 1.0
    else:
        np.testing.assert_array_equal(audio, batch["audio"])


@pytest.fixture(scope="module")
def plain_step(setup):
    config, model, optimizer, _, _ = setup
    return _step(model, optimizer, config.train.defense, None)


def _step(model, optimizer, defense, adversarial_cfg):
    return jax.jit(make_steps(model, optimizer, defense, adversarial_cfg)[0])


@pytest.mark.slow
def test_without_a_threat_the_step_is_the_plain_one(setup, plain_step):
    config, model, optimizer, state, batch = setup
    key = jax.random.key(4)
    plain, _ = plain_step(state, batch, key)
    off, _ = _step(model, optimizer, config.train.defense, _adv_cfg(config, ""))(state, batch, key)
    jax.tree.map(np.testing.assert_array_equal, plain.params, off.params)


@pytest.mark.slow
def test_the_step_trains_on_the_attacked_batch_with_no_gradient_through_the_attack(setup, plain_step):
    """The AT step equals the plain step on the batch its attack returns (so the attack is a constant of the
    loss), and that batch has a higher training loss than the clean one; with `clean_weight` the clean loss
    is mixed in."""
    config, model, optimizer, state, batch = setup
    cfg = _adv_cfg(config, "AV", method="fast", eps_scale=4.0, clean_weight=0.25)
    key = jax.random.key(5)
    new, metrics = _step(model, optimizer, config.train.defense, cfg)(state, batch, key)
    image, audio = jax.jit(lambda v, b, k: adversarial.adversarial_inputs(model, v, b, k, cfg))(
        state.variables(), batch, key)
    attacked = dict(batch, image=image, audio=audio)
    _, on_attacked = plain_step(state, attacked, key)
    _, on_clean = plain_step(state, batch, key)
    assert float(on_attacked["loss"]) > float(on_clean["loss"])
    np.testing.assert_allclose(metrics["loss"], 0.75 * on_attacked["loss"] + 0.25 * on_clean["loss"], rtol=1e-5)
    # without the clean term the update is the plain step's on the attacked batch
    cfg.clean_weight = 0.0
    new, _ = _step(model, optimizer, config.train.defense, cfg)(state, batch, key)
    expected, _ = plain_step(state, attacked, key)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), new.params, expected.params)


def test_each_at_row_trains_against_the_setting_it_is_evaluated_in():
    config = load_config("configs/synthetic.py", "defense=at")
    assert tuple(config.rows) == ("av", "at_a", "at_v", "at_av")
    assert [config.runs[n].label for n in config.rows] == ["None", "AT (A)", "AT (V)", "AT (AV)"]
    from avjax.runs import training_order
    assert training_order(config)[0] == "av"        # the AT rows fine-tune the None run's weights
    ft = config.train.adversarial.finetune
    assert run_config(config, "at_v").train.num_epochs == ft.num_epochs
    assert tuple(run_config(config, "at_v").train.lr_steps) == tuple(ft.lr_steps)
    assert run_config(config, "av").train.num_epochs == config.train.num_epochs
    ev = config.eval
    expect = {"at_a": (0.0, ev.eps_audio_only), "at_v": (ev.eps_visual_only, 0.0),
              "at_av": (ev.eps_joint, ev.eps_joint), "av": None}
    hashes = set()
    for name, eps in expect.items():
        adv = run_config(config, name).train.adversarial
        assert defense_of(config, name) == ("none" if eps is None else f"at_{adv.threat.lower()}")
        if eps is not None:
            assert (adv.eps_visual, adv.eps_audio, adv.units) == (*eps, ev.units)
        hashes.add(training_config_hash(run_config(config, name)))
    assert len(hashes) == 4
    # eps_scale, and an evaluation eps changed on the command line, reach the trained threat (and the hash)
    scaled = load_config("configs/synthetic.py", "defense=at", **{"train.adversarial.eps_scale": 0.5,
                                                                   "eval.eps_audio_only": 0.1})
    assert run_config(scaled, "at_a").train.adversarial.eps_audio == pytest.approx(0.05)
    assert training_config_hash(run_config(scaled, "at_a")) != training_config_hash(run_config(config, "at_a"))
    # `defense=all` adds the AT rows after the paper's
    rows = load_config("configs/synthetic.py", "defense=all").rows
    assert tuple(rows[-3:]) == ("at_a", "at_v", "at_av") and rows[0] == "av"


def test_a_plain_run_keeps_its_training_hash():
    config = load_config("configs/synthetic.py", None)
    without = load_config("configs/synthetic.py", None)
    with without.unlocked():
        del without.train["adversarial"]
    assert training_config_hash(run_config(config, "av")) == training_config_hash(run_config(without, "av"))


@pytest.mark.parametrize("change,message", [
    (dict(threat="X"), "threat='X'"), (dict(method="free"), "method='free'"), (dict(bn="none"), "bn='none'"),
    (dict(steps=0), "at least one step"), (dict(clean_weight=1.0), "clean_weight"),
    (dict(eps_audio=0.0), "attacks nothing")])
def test_bad_adversarial_configs_are_clear_errors(change, message):
    config = load_config("configs/synthetic.py", "defense=at")
    cfg = run_config(config, "at_a").train.adversarial
    with cfg.unlocked():
        cfg.update(change)
    with pytest.raises(ConfigError, match=message):
        adversarial.check(cfg)
