"""The sound-source localization model and its metrics: closed-form cases, invariants, and a tiny run that
writes the localization table and the heat-map figures."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import attacks, experiment
from avjax.evaluation import localization
from avjax.models import build
from avjax.models.localization import LocalizationClassifier, attend, similarity_map
from tests import jitted


def test_scores_are_cosines_and_attention_is_their_weighted_mean():
    rng = np.random.default_rng(0)
    vmap = np.abs(rng.normal(size=(2, 3, 3, 5))).astype(np.float32)
    f_a = np.abs(rng.normal(size=(2, 5))).astype(np.float32)
    cos = np.einsum("bhwd,bd->bhw", vmap, f_a) / (np.linalg.norm(vmap, axis=-1) * np.linalg.norm(f_a, axis=-1)[:, None, None])
    np.testing.assert_allclose(similarity_map(vmap, f_a), cos, rtol=1e-5)
    weights = cos / cos.sum(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(attend(vmap, cos), np.einsum("bhwd,bhw->bd", vmap, weights), rtol=1e-5)


def test_softmax_attention_sums_to_one_and_sharpens_with_temperature():
    from avjax.models.localization import attention_weights
    scores = jnp.array([[[0.2, 0.4], [0.6, 0.9]]])
    for attention in ("mean", "softmax"):
        np.testing.assert_allclose(attention_weights(scores, attention).sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(attention_weights(scores, "softmax", 1.0), jax.nn.softmax(scores.reshape(1, 4)).reshape(1, 2, 2),
                               rtol=1e-6)
    assert float(attention_weights(scores, "softmax", 0.01)[0, 1, 1]) > 0.99
    with pytest.raises(ValueError, match="unknown attention"):
        attention_weights(scores, "max")


def test_box_metrics_closed_form():
    size = 8
    box = jnp.array([[0.25, 0.25, 0.75, 0.75], [0.0, 0.0, 0.25, 0.25]])
    on_box = localization.box_masks(box, size).astype(jnp.float32)      # a heat map equal to each box
    hit, iou = localization.box_scores(on_box, box)
    assert hit.tolist() == [True, True] and np.allclose(iou, 1.0)
    assert int(localization.box_masks(box, size)[0].sum()) == 16         # a 4x4 pixel square
    hit, iou = localization.box_scores(on_box[::-1], box)               # each map on the other's box
    assert hit.tolist() == [False, False] and np.allclose(iou, 0.0)
    half = on_box.at[0, 2:4].set(0.0)                                   # half the first box lit
    _, iou = localization.box_scores(half, box)
    assert np.isclose(iou[0], 0.5)
    s = localization.summarize([True, False], [1.0, 0.0])
    assert s["pointing"] == 50 and s["ciou"] == 50 and s["n"] == 2
    assert np.isclose(s["auc"], np.trapezoid([1.0] + [0.5] * 20, localization.AUC_POINTS))


@pytest.fixture(scope="module")
def model():
    module = build({"modality": "av", "num_classes": 4, "width": 0.125, "architecture": "localization"})
    image = jax.random.uniform(jax.random.key(1), (3, 64, 64, 3))
    audio = jax.random.uniform(jax.random.key(2), (3, 4096), minval=-1, maxval=1)
    return module, jitted.init(module, jax.random.key(0), image, audio), image, audio


@pytest.mark.slow
def test_attack_path_equals_the_forward_pass_and_batch_mates_do_not_matter(model):
    module, variables, image, audio = model
    assert isinstance(module, LocalizationClassifier)
    logits, out = jitted.apply(module, variables, image, audio)
    assert out["scores"].shape == (3, 2, 2) and float(out["scores"].min()) >= 0
    fns = attacks.ModelFns(module, variables)
    via_features, _ = fns.classify(fns.encode_visual(image), fns.encode_audio(audio))
    np.testing.assert_allclose(via_features, logits, rtol=1e-5, atol=1e-6)
    alone, _ = jitted.apply(module, variables, image[1:2], audio[1:2])
    np.testing.assert_allclose(alone[0], logits[1], rtol=1e-5, atol=1e-6)
    adv_image, adv_audio = attacks.pgd(fns, image, audio, jnp.array([0, 1, 2]), eps_visual=0.03, eps_audio=0.03,
                                       steps=2)
    assert float(jnp.max(jnp.abs(adv_image - image))) <= 0.03 + 1e-6
    with pytest.raises(ValueError, match="audio-visual"):
        build({"modality": "audio", "num_classes": 4, "architecture": "localization"})


@pytest.mark.slow
def test_localization_run_writes_the_table_and_heat_maps(tmp_path):
    config = experiment.load_config("configs/synthetic.py", "runlocal,model=localization", **{
        "eval.methods": ("pgd",), "eval.sweep_eps": (), "localization.figure_examples": 3})
    config.data.synthetic.image_size = 64   # a 2x2 map (runlocal's 32 px gives 1x1)
    assert list(config.runs) == ["av"] and config.model.architecture == "localization"
    experiment.run(config, str(tmp_path))
    results = json.load(open(tmp_path / "results.json"))["localization"]["av"]
    assert sorted(results) == ["clean", "pgd/xA", "pgd/xAV", "pgd/xV"]
    for summary in results.values():
        assert summary["n"] == 8 and 0 <= summary["pointing"] <= 100 and 0 <= summary["auc"] <= 1
    md = open(tmp_path / "results.md").read()
    assert "## Sound-source localization: AV localization" in md and "| PGD ✗AV |" in md
    assert os.path.getsize(tmp_path / "figures" / "localization_av_pgd.png") > 10_000
    with pytest.raises(ValueError, match="does not combine"):
        experiment.load_config("configs/synthetic.py", "model=localization,defense=minsim")


def _contrast_reference(vmap, f_a, label, temperature):
    """localization_contrast restated in numpy, pair by pair."""
    b = len(label)
    s = np.zeros((b, b))
    for i in range(b):
        for j in range(b):
            cos = [vmap[i, y, x] @ f_a[j] / (np.linalg.norm(vmap[i, y, x]) * np.linalg.norm(f_a[j]))
                   for y in range(vmap.shape[1]) for x in range(vmap.shape[2])]
            s[i, j] = max(cos) / temperature

    def ce(rows, pos):
        return [-np.log(np.exp(r[p]).sum() / np.exp(r).sum()) for r, p in zip(rows, pos)]

    pos = label[:, None] == label[None, :]
    return float(np.mean(0.5 * (np.array(ce(s, pos)) + np.array(ce(s.T, pos.T)))))


def test_contrast_matches_its_definition_and_rewards_the_matching_location():
    from avjax.train.losses import localization_contrast
    rng = np.random.default_rng(0)
    vmap = np.abs(rng.normal(size=(4, 3, 3, 6)))
    f_a = np.abs(rng.normal(size=(4, 6)))
    label = np.array([0, 1, 0, 2])
    got = localization_contrast(jnp.asarray(vmap), jnp.asarray(f_a), jnp.asarray(label), 0.1, jnp.ones(4))
    np.testing.assert_allclose(float(got), _contrast_reference(vmap, f_a, label, 0.1), rtol=1e-5)
    # a masked-out example is neither an anchor nor a candidate
    masked = localization_contrast(jnp.asarray(vmap), jnp.asarray(f_a), jnp.asarray(label), 0.1,
                                   jnp.array([1.0, 1.0, 1.0, 0.0]))
    np.testing.assert_allclose(float(masked), _contrast_reference(vmap[:3], f_a[:3], label[:3], 0.1), rtol=1e-5)
    # one location per frame carries its class's sound: the loss is lower than with that location elsewhere
    # carrying another class's sound
    sounds = np.eye(3)[[0, 1, 2]] + 0.05
    frames = np.full((3, 2, 2, 3), 0.05)
    for i in range(3):
        frames[i, i % 2, i // 2] = np.eye(3)[i] + 0.05
    wrong = frames.copy()
    for i in range(3):
        wrong[i, i % 2, i // 2] = np.eye(3)[(i + 1) % 3] + 0.05
    args = (jnp.arange(3), 0.1, jnp.ones(3))
    assert float(localization_contrast(jnp.asarray(frames), jnp.asarray(sounds), *args)) < 0.1
    assert float(localization_contrast(jnp.asarray(wrong), jnp.asarray(sounds), *args)) > 3.0


def test_alike_pairs_of_other_classes_are_no_negatives():
    """Two classes whose sounds are identical: with elimination, each frame's loss is as if the other class's
    sound were not in the batch (the map cannot and need not tell them apart)."""
    from avjax.train.losses import localization_contrast
    rng = np.random.default_rng(1)
    vmap = np.abs(rng.normal(size=(4, 2, 2, 5)))
    f_a = np.abs(rng.normal(size=(4, 5)))
    f_a[1] = f_a[0] * 2.0                                   # class 1 sounds exactly like class 0
    label = np.array([0, 1, 2, 3])
    args = (jnp.asarray(vmap), jnp.asarray(f_a), jnp.asarray(label), 0.1, jnp.ones(4))
    eliminated = float(localization_contrast(*args, false_negative_cos=0.999))
    kept = float(localization_contrast(*args))
    assert eliminated < kept
    # rows 0 and 1 lose each other as negatives; rows 2 and 3 keep every candidate
    def row_losses(keep01):
        s = np.array([[max(vmap[i, y, x] @ f_a[j] / (np.linalg.norm(vmap[i, y, x]) * np.linalg.norm(f_a[j]))
                           for y in range(2) for x in range(2)) for j in range(4)] for i in range(4)]) / 0.1
        valid = np.ones((4, 4), bool)
        if not keep01:
            valid[0, 1] = valid[1, 0] = False
        def ce(m):
            return [-(m[i, i] - np.log(np.exp(m[i][valid[i]]).sum())) for i in range(4)]
        return 0.5 * (np.array(ce(s)) + np.array(ce(s.T)))
    np.testing.assert_allclose(eliminated, row_losses(False).mean(), rtol=1e-5)
    np.testing.assert_allclose(kept, row_losses(True).mean(), rtol=1e-5)


@pytest.mark.slow
def test_finer_maps_with_the_same_parameters():
    image = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3))
    audio = jax.random.uniform(jax.random.key(2), (2, 4096), minval=-1, maxval=1)
    shapes = {}
    for stride in (32, 16, 8):
        module = build({"modality": "av", "num_classes": 4, "width": 0.125, "architecture": "localization",
                        "map_stride": stride})
        variables = jitted.init(module, jax.random.key(0), image, audio)
        _, out = jitted.apply(module, variables, image, audio)
        shapes[stride] = (out["scores"].shape, jax.tree.map(jnp.shape, variables["params"]))
    assert shapes[32][0] == (2, 2, 2) and shapes[16][0] == (2, 4, 4) and shapes[8][0] == (2, 8, 8)
    assert shapes[32][1] == shapes[16][1] == shapes[8][1]
    with pytest.raises(ValueError, match="map_stride"):
        module = build({"modality": "av", "num_classes": 4, "architecture": "localization", "map_stride": 4})
        module.init(jax.random.key(0), image, audio)


def test_contrast_needs_the_localization_model():
    from avjax.train.losses import objective
    logits = jnp.zeros((2, 3))
    out = {"visual": jnp.ones((2, 4)), "audio": jnp.ones((2, 4)), "fused": jnp.ones((2, 8))}
    with pytest.raises(ValueError, match="localization model"):
        objective(logits, out, jnp.array([0, 1]), {"name": "none"}, contrast_cfg={"weight": 1.0, "temperature": 0.1})


def test_localization_over_seeds_is_mean_and_std_with_each_seed():
    def run(pointing):
        summary = {"pointing": pointing, "mean_iou": 0.5, "ciou": 40.0, "auc": 0.5, "n": 10}
        return {"av": {"localization": {"clean": summary, "pgd/xA": dict(summary, pointing=pointing / 2)}},
                "audio": {"methods": {}}}
    located = localization.over_seeds([run(60.0), run(40.0)])
    assert list(located) == ["av"] and located["av"]["clean"]["pointing"] == [60.0, 40.0]
    md = "\n".join(localization.seeds_markdown(located, {"av": "AV localization"}, [0, 1]))
    assert "| clean | 50.00 ± 14.14 | 0.500 ± 0.000 | 40.00 ± 0.00 | 0.500 ± 0.000 | 60.0, 40.0 |" in md
    assert md.index("| clean |") < md.index("| PGD ✗A |")
