"""Gaussian noise augmentation (`defense=smoothing`): the noise has its sigma per modality and leaves a modality
with sigma 0 untouched, the step trains on the noisy inputs, and the config gives the noise to that run only."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from avjax.config_files import load_config
from avjax.runs import defense_of, run_config
from avjax.train.loop import training_config_hash
from avjax.train.steps import NOISE_STREAM, make_steps, with_noise
from tests.train.common import initial_run

B, SIZE, AUDIO = 4, 32, 4096


def _inputs():
    kx, ka, kl = jax.random.split(jax.random.key(1), 3)
    return {"image": jax.random.uniform(kx, (B, SIZE, SIZE, 3)),
            "audio": jax.random.uniform(ka, (B, AUDIO), minval=-0.9, maxval=0.9),
            "label": jax.random.randint(kl, (B,), 0, 8)}


def test_the_noise_has_its_sigma_per_modality_and_is_not_clamped():
    batch = _inputs()
    cfg = ConfigDict(dict(sigma_visual=0.25, sigma_audio=0.0))
    image, audio = with_noise(batch["image"], batch["audio"], jax.random.key(3), cfg)
    np.testing.assert_array_equal(audio, batch["audio"])       # sigma 0: untouched, bit for bit
    noise = np.asarray(image - batch["image"], np.float64)
    assert noise.std() == pytest.approx(0.25, rel=0.02) and abs(noise.mean()) < 0.01
    assert float(image.min()) < 0.0 and float(image.max()) > 1.0   # pixels leave [0, 1]: no clamping
    cfg = ConfigDict(dict(sigma_visual=0.0, sigma_audio=0.05))
    image, audio = with_noise(batch["image"], batch["audio"], jax.random.key(3), cfg)
    np.testing.assert_array_equal(image, batch["image"])
    assert np.asarray(audio - batch["audio"], np.float64).std() == pytest.approx(0.05, rel=0.02)


def test_the_config_gives_the_noise_to_the_smoothing_run_only():
    config = load_config("configs/synthetic.py", "defense=smoothing,runlocal")
    assert list(config.rows) == ["av", "smoothing"] and set(config.runs) == {"av", "smoothing"}
    noisy, plain = run_config(config, "smoothing"), run_config(config, "av")
    assert dict(noisy.train.noise) == dict(config.smoothing) and any(noisy.train.noise.values())
    assert not any(plain.train.noise.values())
    assert defense_of(config, "smoothing") == "noise" and defense_of(config, "av") == "none"
    assert training_config_hash(noisy) != training_config_hash(plain)
    without = plain.copy_and_resolve_references()
    with without.unlocked():
        del without.train["noise"]
    assert training_config_hash(without) == training_config_hash(plain)   # no noise: earlier workdirs resume


@pytest.mark.slow
def test_the_step_trains_on_the_noisy_inputs():
    _, rc, model, optimizer, state = initial_run("defense=smoothing,runlocal", "smoothing", SIZE, AUDIO)
    batch, key = _inputs(), jax.random.key(5)
    noisy_step, _ = make_steps(model, optimizer, rc.train.defense, noise_cfg=rc.train.noise)
    plain_step, _ = make_steps(model, optimizer, rc.train.defense)
    zero_step, _ = make_steps(model, optimizer, rc.train.defense,
                              noise_cfg=ConfigDict(dict(sigma_visual=0.0, sigma_audio=0.0)))
    image, audio = with_noise(batch["image"], batch["audio"], jax.random.fold_in(key, NOISE_STREAM), rc.train.noise)
    _, noisy = jax.jit(noisy_step)(state, batch, key)
    _, by_hand = jax.jit(plain_step)(state, dict(batch, image=image, audio=audio), key)
    _, plain = jax.jit(plain_step)(state, batch, key)
    _, zero = jax.jit(zero_step)(state, batch, key)
    np.testing.assert_allclose(noisy["loss"], by_hand["loss"], rtol=1e-6)   # exactly the noisy batch
    assert not np.isclose(float(noisy["loss"]), float(plain["loss"]), rtol=1e-4)
    assert float(zero["loss"]) == float(plain["loss"])                      # sigma 0 on both: the plain step
    assert jnp.isfinite(noisy["loss"])
