"""The eps sweep takes its points at the table's eps from the table instead of attacking again."""
import numpy as np
from ml_collections import ConfigDict

from avjax.configs.base import base_config
from avjax.evaluation import robustness
from tests.attacks.conftest import sensitive_model


def spec_for(sweep_eps):
    c = ConfigDict(base_config().eval.to_dict())
    c.update(units="pixel", steps=2, eps_audio_only=0.04, eps_visual_only=0.04, eps_joint=0.02, loop="fori")
    return robustness.EvalSpec.from_config(c, methods=("pgd",), sweep_eps=sweep_eps)


def test_table_points_are_the_settings_own_eps():
    spec = spec_for((0.0, 0.01, 0.02, 0.04, 0.08))
    reused = {(e, s) for e in spec.sweep_eps for s in robustness.SETTINGS if robustness._table_point(spec, e, s)}
    assert reused == {(0.04, "xA"), (0.04, "xV"), (0.02, "xAV")}


def test_reused_points_equal_attacking_again():
    fns, image, audio, label = sensitive_model()
    batch = {"image": image, "audio": audio, "label": label}
    spec = spec_for((0.0, 0.02, 0.04))
    clean, _ = robustness._jit_clean_gradients(fns, batch, spec)
    table = robustness.method_batch(fns, batch, spec, "pgd", clean)
    with_table = robustness.sweep_batch(fns, batch, spec, spec.sweep_eps, clean, table)
    attacked_again = robustness.sweep_batch(fns, batch, spec, spec.sweep_eps, clean)
    for setting in robustness.SETTINGS:
        np.testing.assert_array_equal(with_table[setting], attacked_again[setting])
    assert not with_table["xAV"][2].all()  # the model is fooled somewhere: the comparison means something
