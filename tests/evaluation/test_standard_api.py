"""`run_standard_evaluation` on arrays: the report's shape and invariants, a check that cannot run reported as not
run, a masked modality flagged in its own setting and never more robust than the same model unmasked, and clear
errors for inputs that do not fit."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax.evaluation import run_standard_evaluation
from tests.attacks.test_strong_attacks import _mlp

B, DIMS, LENGTH, CLASSES = 16, (6, 6, 3), 64, 5
FAST = dict(apgd_steps=5, square_queries=300, target_classes=2, large_eps_factor=4.0, adaptive=())


def _model(seed=0):
    """The protocol tests' small nonlinear AV model, as a plain function of numpy inputs."""
    fns, image, audio, label = _mlp(seed, DIMS, LENGTH, CLASSES, batch=B)
    return (lambda img, aud: fns(img, aud)[0]), np.asarray(image), np.asarray(audio), np.asarray(label)


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.mark.slow
def test_the_report_has_every_setting_with_its_worst_case_checks_and_flags(model):
    logits_fn, image, audio, label = model
    report = run_standard_evaluation(logits_fn, image, audio, label, eps_visual=0.03, eps_audio=0.05,
                                     key=jax.random.key(0), batch_size=6, **FAST)   # 16 examples: a padded batch
    assert report["n"] == B and report["clean_accuracy"] == 100.0
    assert set(report["settings"]) == {"xA", "xV", "xAV"}
    for setting, row in report["settings"].items():
        per = row["per_attack"]
        assert {"apgd-ce", "apgd-t", "fab-t", "square", "apgd-ce/more_steps", "large_eps", "swap"} <= set(per)
        assert row["robust_accuracy"] <= min(v for k, v in per.items()
                                             if k not in ("large_eps", "swap", "zero_gradient"))
        assert "large_eps" in {c["check"] for c in row["checks"]}          # in every setting, xA and xV too
        transfer = [c for c in row["checks"] if c["check"] == "transfer"]
        assert transfer[0]["passed"] is None and transfer[0]["status"] == "not run"   # no baseline: not passed
        assert "transfer" not in row["flags"]
        assert row["flags"] == [c["check"] for c in row["checks"] if c["passed"] is False]
    assert report["settings"]["xAV"]["robust_accuracy"] < 100.0          # the attacks do something here
    assert report["attacks"]["apgd-ce"]["steps"] == 5


@pytest.mark.slow
def test_with_a_baseline_the_transfer_check_runs(model):
    logits_fn, image, audio, label = model
    report = run_standard_evaluation(logits_fn, image, audio, label, eps_visual=0.03, eps_audio=0.05,
                                     key=jax.random.key(0), settings=("xAV",), baseline=_model(seed=1)[0], **FAST)
    assert set(report["settings"]) == {"xAV"}
    transfer = [c for c in report["settings"]["xAV"]["checks"] if c["check"] == "transfer"][0]
    assert transfer["passed"] in (True, False) and "transfer" in report["settings"]["xAV"]["per_attack"]


@pytest.mark.slow
@pytest.mark.parametrize("masked_input", ["audio", "visual"])
def test_a_modality_read_through_stop_gradient_is_flagged_and_not_more_robust(model, masked_input):
    """The same outputs with zero input gradient in one modality: in that modality's setting the masked model must
    not come out more robust than the unmasked one (Square and the other checks' attacks count), and it is
    flagged there."""
    logits_fn, image, audio, label = model
    if masked_input == "audio":
        masked = lambda img, aud: logits_fn(img, jax.lax.stop_gradient(aud))  # noqa: E731
        setting, kw = "xA", dict(eps_visual=0.03, eps_audio=0.1)
    else:
        masked = lambda img, aud: logits_fn(jax.lax.stop_gradient(img), aud)  # noqa: E731
        setting, kw = "xV", dict(eps_visual=0.1, eps_audio=0.05)
    common = dict(key=jax.random.key(1), settings=(setting,), **kw, **FAST)
    plain = run_standard_evaluation(logits_fn, image, audio, label, **common)["settings"][setting]
    hidden = run_standard_evaluation(masked, image, audio, label, **common)["settings"][setting]
    assert hidden["robust_accuracy"] <= plain["robust_accuracy"] + 100.0 / B   # one example of tolerance
    assert {"zero_gradient", "black_box"} <= set(hidden["flags"]) and not plain["flags"]
    # the unbounded check ran in this single-modality setting (its random start alone may match the swap here)
    assert {"large_eps", "transfer"} <= {c["check"] for c in hidden["checks"]}
    assert hidden["per_attack"]["large_eps"] <= hidden["per_attack"]["apgd-ce"]


@pytest.mark.parametrize("change,message", [
    (dict(image_scale=255.0), "image: values must be finite and lie in"),
    (dict(audio_scale=4.0), "audio: values must be finite and lie in"),
    (dict(label_shift=CLASSES), "outside the 5 classes"),
    (dict(eps_visual=4.0), "covers the whole pixel range"),
    (dict(eps_audio=0.0), "xA attacks with eps_audio=0"),
    (dict(units="imagenet"), "units='imagenet'"),
    (dict(nan=True), "non-finite logits"),
    (dict(settings=("xB",)), "settings=")])
def test_inputs_that_do_not_fit_are_clear_errors(model, change, message):
    logits_fn, image, audio, label = model
    fn = (lambda img, aud: logits_fn(img, aud) * jnp.nan) if change.pop("nan", False) else logits_fn
    image = image * change.pop("image_scale", 1.0)
    audio = audio * change.pop("audio_scale", 1.0)
    label = label + change.pop("label_shift", 0)
    kw = dict(eps_visual=0.03, eps_audio=0.05, key=jax.random.key(0), **FAST)
    with pytest.raises(ValueError, match=message):
        run_standard_evaluation(fn, image, audio, label, **{**kw, **change})


def test_a_reported_success_the_full_model_does_not_confirm_counts_as_right_and_is_flagged():
    from avjax.evaluation import protocol
    from avjax.evaluation.common import DISAGREE, rescored
    from avjax.attacks.core import as_model_fns
    logits_fn = as_model_fns(lambda img, aud: jnp.stack([img[:, 0], aud[:, 0]], -1))  # class 1 wins when aud > img
    image, audio = jnp.array([[0.2], [0.8], [0.5]]), jnp.array([[0.9], [0.1], [0.6]])
    label = jnp.array([1, 1, 0])                    # right, wrong, wrong
    got = rescored(logits_fn, image, audio, label, jnp.array([True, True, False]))
    assert got.tolist() == [DISAGREE, 0, 0]         # reported but right: flagged; reported and wrong: fooled
    from tests.attacks.test_strong_attacks import _spec
    spec = _spec()
    names = spec.attack_list(False, False)
    correct = {"clean": np.ones(3, np.int8)}
    for s in range(3):
        correct.update({(s, a): np.ones(3, np.int8) for a in names})
    correct[(2, "square")] = np.array([DISAGREE, 0, 1], np.int8)
    res = protocol.summarize(correct, names, spec)
    assert res["settings"]["xAV"]["square"] == pytest.approx(200 / 3)   # the disagreement counts as right
    assert res["settings"]["xAV"]["rescore"]["square"] == 1
    flagged = [c for c in res["checklist"] if c["check"] == "rescore" and c["passed"] is False]
    assert [c["setting"] for c in flagged] == ["xAV"] and "square: 1" in flagged[0]["detail"]


@pytest.mark.slow
def test_a_model_whose_logits_depend_on_its_batch_mates_is_flagged_by_the_rescore():
    """The attack keeps each example's success from the step that found it, with its batch-mates where they were
    then; the returned batch holds every example's own final point. A model that normalises its logits over the
    batch can classify right, with the final batch-mates, an example the attack saw fooled."""
    logits_fn, image, audio, label = _model()

    def batch_dependent(img, aud):
        z = logits_fn(img, aud)
        return z - 3.0 * z.mean(0, keepdims=True)

    label = np.asarray(batch_dependent(jnp.asarray(image), jnp.asarray(audio)).argmax(-1))
    report = run_standard_evaluation(batch_dependent, image, audio, label, eps_visual=0.03, eps_audio=0.05,
                                     key=jax.random.key(0), batch_size=B, **FAST)
    disagreements = sum(n for row in report["settings"].values() for n in row["rescore_disagreements"].values())
    assert disagreements > 0
    assert any("rescore" in row["flags"] for row in report["settings"].values())
    plain = run_standard_evaluation(logits_fn, *_model()[1:], eps_visual=0.03, eps_audio=0.05,
                                    key=jax.random.key(0), batch_size=B, **FAST)
    assert all("rescore" not in row["flags"] and not any(row["rescore_disagreements"].values())
               for row in plain["settings"].values())
