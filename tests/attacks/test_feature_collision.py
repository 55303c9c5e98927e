"""Feature collision against the external memory: targets of another class, steps inside the ball, and the
features really move onto the target."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import attacks
from avjax.attacks.feature_collision import raw_features
from avjax.configs.base import base_config
from avjax.defenses.memory import memory_collection
from avjax.models import build
from tests import jitted


@pytest.fixture(scope="module")
def defended():
    """A memory-defended AV model whose atoms are the encoder features of 8 other examples."""
    cfg = base_config().model.to_dict()
    cfg.update(num_classes=4, width=0.125)
    plain = build(dict(cfg, memory=dict(cfg["memory"], size=0)))
    model = build(dict(cfg, memory=dict(cfg["memory"], size=8)))
    image = jax.random.uniform(jax.random.key(1), (4, 32, 32, 3))
    audio = jax.random.uniform(jax.random.key(2), (4, 4096), minval=-0.9, maxval=0.9)
    variables = jitted.init(plain, jax.random.key(0), image, audio)
    atoms_image = jax.random.uniform(jax.random.key(3), (8, 32, 32, 3))
    atoms_audio = jax.random.uniform(jax.random.key(4), (8, 4096), minval=-0.9, maxval=0.9)
    f_v, f_a = jitted.apply(plain, variables, atoms_image, atoms_audio, method="raw_features")
    fns = attacks.ModelFns(model, {**variables, "memory": memory_collection(np.asarray(f_v), np.asarray(f_a))})
    label = jnp.argmax(fns(image, audio)[0], -1)
    return fns, image, audio, label


@pytest.mark.slow
def test_atoms_are_labelled_by_the_head_and_targets_belong_to_another_class(defended):
    fns, image, audio, label = defended
    labels = attacks.atom_labels(fns)
    memory = fns.variables["memory"]
    assert labels.shape == (8,)
    np.testing.assert_array_equal(labels, jnp.argmax(fns.classify(memory["visual"], memory["audio"])[0], -1))
    t_v, t_a = attacks.memory_targets(fns, image, audio, label)
    for i in range(len(label)):
        k = int(np.argmax(np.all(np.isclose(np.asarray(memory["visual"]), np.asarray(t_v[i])), -1)))
        np.testing.assert_allclose(t_a[i], memory["audio"][k])
        if np.any(np.asarray(labels) != int(label[i])):
            assert int(labels[k]) != int(label[i])


@pytest.mark.slow
@pytest.mark.parametrize("eps_v, eps_a", [(0.0, 0.05), (0.05, 0.0), (0.03, 0.03)])
def test_collision_stays_in_the_ball_and_moves_the_features_onto_the_target(defended, eps_v, eps_a):
    fns, image, audio, label = defended
    targets = attacks.memory_targets(fns, image, audio, label)
    adv_v, adv_a = attacks.feature_collision(fns, image, audio, label, eps_visual=eps_v, eps_audio=eps_a,
                                             steps=20, step_fraction=0.25, targets=targets)
    assert float(jnp.max(jnp.abs(adv_v - image))) <= eps_v + 1e-6
    assert float(jnp.max(jnp.abs(adv_a - audio))) <= eps_a + 1e-6
    assert float(adv_v.min()) >= 0 and float(adv_v.max()) <= 1 and float(jnp.max(jnp.abs(adv_a))) <= 1
    if eps_v == 0:
        assert np.array_equal(adv_v, image)
    if eps_a == 0:
        assert np.array_equal(adv_a, audio)
    before = raw_features(fns, image, audio)
    after = raw_features(fns, adv_v, adv_a)
    for on, f0, f1, t in ((eps_v > 0, before[0], after[0], targets[0]), (eps_a > 0, before[1], after[1], targets[1])):
        if on:  # closer to the target atom for every example that was not fooled early
            assert float(jnp.mean((f1 - t) ** 2)) < float(jnp.mean((f0 - t) ** 2))


@pytest.mark.slow
def test_a_model_without_memory_is_refused(defended):
    fns, image, audio, label = defended
    plain = attacks.ModelFns(fns.module.clone(memory=None), {k: v for k, v in fns.variables.items() if k != "memory"})
    with pytest.raises(ValueError, match="external memory"):
        attacks.atom_labels(plain)


@pytest.mark.slow
def test_the_standard_protocol_runs_it_against_memory_models_only(defended):
    from avjax.evaluation import protocol
    spec = protocol.ProtocolSpec.from_config(base_config().eval)
    assert "feature-collision" in spec.attack_list(has_memory=True, has_transfer=False)
    assert "feature-collision" not in spec.attack_list(has_memory=False, has_transfer=False)
    assert spec.parameters("feature-collision")["target"].startswith("the nearest memory atom")
    fns, image, audio, label = defended
    correct = protocol.attack_once(fns, {"image": image, "audio": audio, "label": label}, np.float32(0.03),
                                   np.float32(0.03), jax.random.key(0), spec=spec, kind="feature-collision",
                                   setting=2)
    assert correct.shape == label.shape and set(np.asarray(correct).tolist()) <= {0, 1}
