"""Certified accuracy over a split: the curves count right, non-abstained certificates at each radius, each mode
smooths its own modality, and a run of `defense=crmt` reports them (with L2 PGD and CRMT's bound) in results.md /
results.json / a figure."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax.evaluation import certified


def test_the_curve_counts_right_certificates_at_least_that_large():
    correct = np.array([1, 1, 1, 0, 1], bool)
    radius = np.array([0.0, 0.3, 1.2, 2.0, 0.8])
    abstain = np.array([True, False, False, False, False])
    # r = 0: examples 1, 2, 4 (0 abstained, 3 wrong); r = 0.5: 2, 4; r = 1: 2; r = 2: none
    assert certified.curve(correct, radius, abstain, (0.0, 0.5, 1.0, 2.0)) == [60.0, 40.0, 20.0, 0.0]


def test_each_mode_smooths_its_own_modality_and_reports_its_own_units():
    assert certified.mode_sigmas("audio", 0.25, 0.05) == (0.0, 0.05)
    assert certified.mode_sigmas("visual", 0.25, 0.05) == (0.25, 0.0)
    assert certified.mode_sigmas("joint", 0.25, 0.05) == (0.25, 0.05)
    assert [certified.radius_scale(m, 0.25, 0.05) for m in certified.MODES] == [0.05, 0.25, 1.0]
    with pytest.raises(ValueError, match="unknown certification mode"):
        certified.mode_sigmas("both", 0.25, 0.05)


def test_an_audio_certificate_is_about_the_audio_alone():
    """A model that reads only the frame's mean: noise on the audio never changes it (every draw agrees: the
    largest radius n draws can give), noise on the frame does."""
    from avjax import parallel

    def logits_fn(image, audio):
        m = jnp.mean(image, axis=(1, 2, 3))
        return jnp.stack([m - 0.5, 0.5 - m], -1)

    image = jnp.concatenate([jnp.full((2, 8, 8, 3), 0.9), jnp.full((2, 8, 8, 3), 0.1)])
    audio = jax.random.uniform(jax.random.key(0), (4, 64), minval=-1, maxval=1)
    label = np.array([0, 0, 1, 1])
    source = [{"image": np.asarray(image[i]), "audio": np.asarray(audio[i]), "label": int(label[i])}
              for i in range(4)]
    res = certified.evaluate(logits_fn, source, None, sigma_visual=8.0, sigma_audio=0.5,
                             modes=("audio", "visual"), n0=8, n=64, alpha=0.01, draws_per_call=16, seed=0,
                             radii=(0.0, 1.0), examples=4, batch_size=4, mesh=parallel.make_mesh(), workers=0,
                             name="frame-only", attack_steps=4)
    audio_cert = res["audio"]["per_example"]
    assert all(audio_cert["correct"]) and not any(audio_cert["abstain"])
    z = certified.certify_cap(64, 0.01)   # every draw agrees: the largest radius 64 draws can certify
    assert z == pytest.approx(float(jax.scipy.stats.norm.ppf(0.01 ** (1 / 64))), rel=1e-5)
    np.testing.assert_allclose(audio_cert["radius"], 0.5 * z, rtol=1e-4)   # sigma_audio x z, in samples
    assert max(res["visual"]["per_example"]["radius"]) < 8.0 * z   # the frame's noise does move the prediction
    assert res["n_examples"] == 4 and res["audio"]["radii"] == [0.0, 0.5]
    # L2 PGD in the same balls: no audio change moves it; 8 pixels of L2 reach the boundary (0.4 x sqrt(192) = 5.5)
    assert res["audio"]["attacked"] == [100.0, 100.0] and res["visual"]["attacked"] == [100.0, 0.0]


@pytest.mark.slow
def test_crmt_run_reports_certificates_attacks_and_the_crmt_bound(tmp_path):
    """defense=crmt (None + CRMT): both models certified and attacked by L2 PGD in the same balls, CRMT's bound
    checked against that attack (the noise-trained row of defense=smoothing is one more AV model to certify:
    tests/train/test_noise.py trains it)."""
    from avjax import experiment
    from avjax.config_files import load_config
    config = load_config("configs/synthetic.py", "defense=crmt,runlocal")
    config.eval.methods = ("fgsm",)
    config.eval.sweep_eps = ()
    config.certify.modes = ("joint",)   # each mode's own smoothing: test_an_audio_certificate_is_about_the_audio_alone
    assert config.certify.examples == 8 and config.certify.attack_steps == 2
    out = experiment.run(config, str(tmp_path))
    trained, evaluated = out["train"], out["evaluate"]
    assert set(evaluated) == {"av", "crmt"} and evaluated["crmt"]["defense"] == "crmt"
    second = trained["crmt"]["crmt"]   # the second step ran: Lipschitz estimates per class, a trained
    assert len(second["lipschitz_visual"]) == config.model.num_classes and min(second["lipschitz_audio"]) > 0
    assert "crmt" not in trained["av"]
    for name in evaluated:
        res = evaluated[name]["certified"]
        assert res["n_examples"] == 8 and res["sigma_visual"] == config.smoothing.sigma_visual
        assert "audio" not in res and "visual" not in res
        acc = res["joint"]["accuracy"]
        assert len(acc) == len(config.certify.radii) and all(b <= a for a, b in zip(acc, acc[1:]))
        assert acc[0] <= 100 * np.mean(res["joint"]["per_example"]["correct"]) + 1e-9
        attacked = res["joint"]["attacked"]
        assert len(attacked) == len(acc) and all(0 <= a <= 100 for a in attacked) and attacked[-1] <= attacked[0]
        assert ("crmt_bound" in res["joint"]) == (name == "crmt")
    bound = evaluated["crmt"]["certified"]["joint"]
    assert bound["crmt_bound"][0] == pytest.approx(bound["attacked"][0])   # at r = 0 both are the clean accuracy
    assert len(bound["crmt_violations"]) == len(acc) and bound["crmt_violations"][0] == 0
    own = bound["crmt_own_bound"]
    assert 0 <= own["broken"] <= own["examples"] <= 8
    md = open(tmp_path / "results.md").read()
    assert "## Certified accuracy by randomized smoothing (beyond the paper)" in md and "| CRMT |" in md
    assert f"| None: {certified.ATTACKED} |" in md and f"| CRMT: {certified.BOUND} |" in md
    assert "CRMT's bound against L2 PGD" in md and "attacked just inside its own bound" in md
    stored = json.load(open(tmp_path / "results.json"))["certified"]
    assert set(stored) == {"av", "crmt"}
    assert os.path.getsize(tmp_path / "figures" / "certified_accuracy.png") > 10_000


def test_certificates_over_seeds_are_mean_and_std_at_each_radius():
    def seed(acc):
        mode = {"radii": [0.0, 0.5], "accuracy": acc, "attacked": [acc[0], 0.0], "per_example": {}}
        return {"av": {"certified": {"sigma_visual": 0.25, "sigma_audio": 0.05, "n0": 4, "n": 16, "alpha": 0.001,
                                     "n_examples": 8, "joint": mode}}, "audio": {}}
    over = certified.over_seeds([seed([90.0, 50.0]), seed([80.0, 40.0])])
    assert list(over) == ["av"] and over["av"]["joint"]["accuracy"] == [[90.0, 50.0], [80.0, 40.0]]
    md = "\n".join(certified.seeds_markdown(over, {"av": "None"}, [0, 1]))
    assert "| None | 85.00 ± 7.07 | 45.00 ± 7.07 |" in md and "**joint**" in md and "**audio**" not in md
    assert f"| None: {certified.ATTACKED} | 85.00 ± 7.07 | 0.00 ± 0.00 |" in md
