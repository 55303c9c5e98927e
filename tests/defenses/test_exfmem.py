"""The external feature memory in a model, and the whole defense table pipeline on tiny data."""
import copy
import importlib.util
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import attacks, defenses, experiment, model_dir
from avjax.evaluation import protocol
from avjax.configs.base import base_config
from avjax.defenses.memory import defend_feature, memory_collection, ridge_code
from avjax.models import build
from avjax.train.optimizer import make_optimizer
from avjax.train.state import init_state
from tests import jitted

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABELS = ["None", "Unimodal A", "Unimodal V", "PCL", "MaxSim", "MinSim", "ExFMem", "MinSim+ExFMem",
          "AT (A)", "AT (V)", "AT (AV)"]   # the paper's rows, then the positive control beyond it


def synthetic_config(arg):
    spec = importlib.util.spec_from_file_location("synthetic_cfg", os.path.join(REPO, "configs", "synthetic.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def memory_model(size=6, width=0.125):
    cfg = base_config().model.to_dict()
    cfg.update(num_classes=4, width=width)
    cfg["memory"] = dict(cfg["memory"], size=size)
    return build(cfg), build(dict(cfg, memory=dict(cfg["memory"], size=0)))


def inputs(batch=3):
    return (jax.random.uniform(jax.random.key(1), (batch, 32, 32, 3)),
            jax.random.uniform(jax.random.key(2), (batch, 4096), minval=-1, maxval=1))


@pytest.mark.slow
def test_features_pass_through_the_memory_before_fusion():
    model, plain = memory_model()
    image, audio = inputs()
    variables = jitted.init(plain, jax.random.key(0), image, audio)
    f_v, f_a = jitted.apply(plain, variables, image, audio, method="raw_features")
    rng = np.random.default_rng(0)
    memory = memory_collection(np.abs(rng.normal(size=(6, f_v.shape[1]))), np.abs(rng.normal(size=(6, f_a.shape[1]))))
    defended = {**variables, "memory": memory}
    logits, out = jitted.apply(model, defended, image, audio)
    for name, raw in (("visual", f_v), ("audio", f_a)):
        bank = jnp.asarray(memory[name])
        want = defenses.blend(bank, raw, defenses.sparse_code(bank, raw), 0.5)
        np.testing.assert_allclose(out[name], want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits, jitted.apply(plain, variables, image, audio)[0])


@pytest.mark.slow
def test_a_defended_model_refuses_to_start_without_a_fitting_memory():
    model, plain = memory_model()
    image, audio = inputs(1)
    optimizer = make_optimizer(base_config().train, 10)
    with pytest.raises(ValueError, match="no memory was given"):
        init_state(model, optimizer, jax.random.key(0), image.shape[1:], audio.shape[-1], 4)
    variables = jitted.init(plain, jax.random.key(0), image, audio)
    wrong = memory_collection(np.ones((6, 7)), np.ones((6, 64)))
    with pytest.raises(ValueError, match=r"visual memory has shape \(6, 7\).*needs \(6, 64\)"):
        init_state(model, optimizer, jax.random.key(0), image.shape[1:], audio.shape[-1], 4,
                   init_variables={**variables, "memory": wrong})
    with pytest.raises(ValueError, match="needs an audio-visual model"):
        build(dict(modality="audio", num_classes=4, memory=dict(base_config().model.memory, size=4)))


@pytest.mark.slow
def test_ce_plus_cos_attack_loss_works_on_unimodal_models():
    image, audio = inputs(2)
    for modality in ("audio", "visual"):
        model = build(dict(modality=modality, num_classes=4, width=0.125))
        fns = attacks.ModelFns(model, jitted.init(model, jax.random.key(0), image, audio))
        adv = attacks.pgd(fns, image, audio, jnp.array([0, 1]), eps_visual=0.01, eps_audio=0.01, loss="ce+cos",
                          steps=1)
        assert all(np.all(np.isfinite(a)) for a in adv)


@pytest.fixture(scope="module")
def defense_table(tmp_path_factory):
    config = synthetic_config("defense=all,runlocal")
    config.eval.sweep_eps = ()
    config.eval.methods = ("pgd",)  # one attack suffices for the table's shape (CI time)
    workdir = str(tmp_path_factory.mktemp("defense_all"))
    experiment.run(config, workdir)
    return config, workdir


@pytest.mark.slow
def test_defense_all_renders_the_appendix_table(defense_table):
    config, workdir = defense_table
    md = open(os.path.join(workdir, "results.md")).read()
    pgd = md.split("## PGD")[1].split("##")[0]
    rows = [line.split("|")[1].strip() for line in pgd.splitlines() if line.startswith("| ") and "✓AV" not in line]
    assert rows == LABELS
    records = json.load(open(os.path.join(workdir, "results.json")))["records"]
    loss = {r["label"]: r["attack_loss"] for r in records}
    assert loss["None"] == loss["Unimodal A"] == loss["Unimodal V"] == "ce"
    assert {loss[k] for k in ("PCL", "MaxSim", "MinSim", "ExFMem", "MinSim+ExFMem")} == {"ce+cos"}
    eps = {(r["eps_visual"], r["eps_audio"]) for r in records if r["attack"] == "pgd"}
    assert eps == {(0.0, 0.02), (0.02, 0.0), (0.02, 0.02)}  # one eps for every setting
    # the positive control: each AT row against None in the setting it was trained for, with a verdict
    control = md.split("## Positive control")[1].split("##")[0]
    lines = [line for line in control.splitlines() if line.startswith("| AT")]
    assert [(line.split("|")[1].strip(), line.split("|")[2].strip()) for line in lines] == [
        ("AT (A)", "✗A"), ("AT (V)", "✗V"), ("AT (AV)", "✗AV")]
    assert all(line.rstrip(" |").endswith(("✓", "✗")) for line in lines)
    assert {r["defense"] for r in records if r["label"].startswith("AT")} == {"at_a", "at_v", "at_av"}


@pytest.mark.slow
def test_memory_diagnostics_are_reported_and_agree_with_the_table(defense_table):
    _, workdir = defense_table
    md = open(os.path.join(workdir, "results.md")).read()
    results = json.load(open(os.path.join(workdir, "results.json")))
    diagnosed = results["memory_diagnostics"]
    assert sorted(diagnosed) == ["exfmem", "minsim_exfmem"]
    clean = {r["label"]: r["accuracy"] for r in results["records"] if r["attack"] == "none"}
    for run, label in (("exfmem", "ExFMem"), ("minsim_exfmem", "MinSim+ExFMem")):
        assert f"## What the memory does: {label}" in md
        res = diagnosed[run]
        assert [row["blend"] for row in res["blend_accuracy"]] == [0.5] and res["blend"] == 0.5
        own = res["blend_accuracy"][0]
        assert own["clean"] == pytest.approx(clean[label])   # the model's own a is the table's model
        for modality in ("visual", "audio"):
            m = res["modalities"][modality]
            assert 0 <= m["clean"]["reconstruction_error"] and m["attack_displacement"] > 0
            assert 0 <= m["clean"]["nearest_atom_other_class"] <= 100   # the atoms' labels were kept
        built = np.load(os.path.join(workdir, "runs", run, "memory.npz"))
        assert built["labels"].shape == (built["visual"].shape[0],)


def test_memory_diagnostics_summary_closed_form():
    from avjax.evaluation.memory_diagnostics import summarize
    bank = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]])
    atom_labels = np.array([0, 1, 1])
    f = np.array([[0.1, 0.0], [3.9, 0.0]])                     # near atoms 0 and 1
    f_adv = np.array([[3.1, 0.0], [3.9, 1.0]])                  # the first crosses to atom 1's class
    codes = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    parts = {"clean": (f, codes, np.array([[0.0, 0.0], [3.9, 0.39]])),
             "attacked": (f_adv, np.array([[0.0, 0.5, 0.5], [0.0, 1.0, 0.0]]), f_adv)}
    s = summarize(parts, np.array([0, 1]), bank, atom_labels)
    # ||f - recon|| / ||f||: 0.1 / 0.1 and 0.39 / 3.9
    assert s["clean"]["reconstruction_error"] == pytest.approx(0.5 * (1.0 + 0.1))
    assert s["attacked"]["reconstruction_error"] == 0 and s["attacked"]["atoms_used"] == 1.5
    assert s["clean"]["nearest_atom_other_class"] == 0 and s["attacked"]["nearest_atom_other_class"] == 50
    assert s["attack_displacement"] == pytest.approx(2.0)      # median of 3.0 and 1.0
    assert s["atom_distance_between_classes"] == pytest.approx(3.5)  # median of 4, 3 (and their mirrors)
    assert s["displacement_ratio"] == pytest.approx(2.0 / 3.5)
    assert "displacement_ratio" not in summarize(parts, np.array([0, 1]), bank, None)


def test_blend_zero_is_the_model_without_its_memory():
    from avjax.evaluation.memory_diagnostics import with_blend
    model, plain = memory_model()
    image, audio = inputs()
    variables = jitted.init(plain, jax.random.key(0), image, audio)
    rng = np.random.default_rng(0)
    dim = model.feature_dim
    defended = {**variables, "memory": memory_collection(np.abs(rng.normal(size=(6, dim))),
                                                         np.abs(rng.normal(size=(6, dim))))}
    fns = with_blend(attacks.ModelFns(model, defended), 0.0)
    np.testing.assert_allclose(fns(image, audio)[0], jitted.apply(plain, variables, image, audio)[0],
                               rtol=1e-5, atol=1e-6)
    assert model.memory.blend == 0.5 and fns.variables["memory"]["blend"] == 0.0
    half = with_blend(attacks.ModelFns(model, defended), 0.5)
    np.testing.assert_allclose(half(image, audio)[0], jitted.apply(model, defended, image, audio)[0],
                               rtol=1e-5, atol=1e-6)
    # the weight is a leaf, not part of the module: every weight runs the same compiled program
    assert jax.tree.structure(half) == jax.tree.structure(fns)


@pytest.mark.slow
def test_memory_is_exported_with_the_model_and_never_trained(defense_table):
    _, workdir = defense_table
    for run in ("exfmem", "minsim_exfmem"):
        _, cfg, variables = model_dir.load_model(os.path.join(workdir, "runs", run, "model"))
        built = np.load(os.path.join(workdir, "runs", run, "memory.npz"))
        assert cfg["memory"]["size"] == built["visual"].shape[0]
        for name in ("visual", "audio"):
            np.testing.assert_array_equal(np.asarray(variables["memory"][name]), built[name])
    _, cfg, variables = model_dir.load_model(os.path.join(workdir, "runs", "minsim", "model"))
    assert "memory" not in variables and cfg["memory"]["size"] == 0


def test_an_exported_model_with_a_memory_that_does_not_fit_is_refused(tmp_path):
    _, plain = memory_model()
    image, audio = inputs(1)
    variables = jitted.init(plain, jax.random.key(0), image, audio)
    cfg = base_config().model.to_dict()
    cfg.update(num_classes=4, width=0.125)
    cfg["memory"] = dict(cfg["memory"], size=6)
    model_dir.save_model(tmp_path / "m", cfg, {**variables, "memory": memory_collection(np.ones((5, 64)),
                                                                                          np.ones((5, 64)))})
    with pytest.raises(ValueError, match=r"m: visual memory has shape \(5, 64\).*needs \(6, 64\)"):
        model_dir.load_model(tmp_path / "m")


@pytest.mark.slow
def test_memory_banks_from_train_mode_and_from_eval_mode_features():
    from avjax import parallel
    from avjax.data import sources as data_sources
    from avjax.train.memory_bank import collect_features
    config = synthetic_config("runlocal")
    srcs, tfs = data_sources.build(config.data)
    model = build(dict(config.model.to_dict(), memory=None))
    ex = data_sources.first_example(srcs, tfs)
    variables = jitted.init(model, jax.random.key(0), ex["image"][None], ex["audio"][None])
    kw = dict(size=12, batch_size=4, seed=0, mesh=parallel.make_mesh())
    train = collect_features(model, variables, srcs, tfs, source="train_mode", **kw)
    evaluated = collect_features(model, variables, srcs, tfs, source="eval_best", **kw)
    again = collect_features(model, variables, srcs, tfs, source="eval_best", **kw)
    for banks in (train, evaluated):
        assert banks["visual"].shape == (12, model.feature_dim) and banks["audio"].shape == (12, model.feature_dim)
        assert all(np.all(np.isfinite(b)) for b in banks.values())
    np.testing.assert_array_equal(evaluated["visual"], again["visual"])       # deterministic
    # each atom's label is its example's: eval-mode atoms are the features of labelled training examples
    examples = [(tfs["eval"] or (lambda e: e))(srcs["train"][i]) for i in range(len(srcs["train"]))]
    f_v, _ = jitted.apply(model, variables, np.stack([e["image"] for e in examples]),
                          np.stack([e["audio"] for e in examples]), method="raw_features")
    nearest = np.argmin(np.linalg.norm(evaluated["visual"][:, None] - np.asarray(f_v)[None], axis=-1), axis=1)
    np.testing.assert_array_equal(evaluated["labels"], [examples[j]["label"] for j in nearest])
    assert not np.allclose(train["visual"], evaluated["visual"])              # batch statistics + jitter
    with pytest.raises(ValueError, match="needs 100 training examples"):
        collect_features(model, variables, srcs, tfs, source="eval_best", **dict(kw, size=100))


@pytest.mark.slow
def test_non_finite_logits_stop_the_evaluation_instead_of_making_a_table():
    from avjax.data import sources as data_sources
    from avjax.evaluation import robustness
    config = synthetic_config("runlocal")
    srcs, tfs = data_sources.build(config.data)
    model = build(dict(config.model.to_dict(), memory=None))
    ex = data_sources.first_example(srcs, tfs)
    variables = jitted.init(model, jax.random.key(0), ex["image"][None], ex["audio"][None])
    variables["params"]["classifier"]["bias"] = variables["params"]["classifier"]["bias"].at[0].set(jnp.nan)
    eval_spec = robustness.EvalSpec.from_config(config.eval, methods=("fgsm",), sweep_eps=())
    with pytest.raises(FloatingPointError, match="broken: non-finite logits under fgsm"):
        robustness.evaluate_model(attacks.ModelFns(model, variables), srcs["test"], tfs["eval"], eval_spec,
                                  batch_size=8, name="broken")


def test_bpda_surrogates_keep_the_forward_and_replace_the_backward():
    """Adaptive attacks: 'bpda_identity' and 'bpda_ridge' give the defended feature exactly, with the
    gradient of the identity / of the closed-form ridge coder."""
    import dataclasses

    from avjax.models import memory_spec
    rng = np.random.default_rng(0)
    bank = jnp.asarray(np.abs(rng.normal(size=(6, 5))), jnp.float32)
    big_l = defenses.lipschitz(bank)
    f = jnp.asarray(np.abs(rng.normal(size=(3, 5))), jnp.float32)
    spec = memory_spec(dict(base_config().model.memory, size=6))
    out = {g: defend_feature(dataclasses.replace(spec, gradient=g), bank, big_l, f, 0.0)
           for g in ("default", "bpda_identity", "bpda_ridge")}
    for g in ("bpda_identity", "bpda_ridge"):
        np.testing.assert_allclose(out[g], out["default"], rtol=1e-6, atol=1e-6)
    probe = jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
    grad = lambda g: jax.grad(lambda x: jnp.sum(probe * defend_feature(  # noqa: E731
        dataclasses.replace(spec, gradient=g), bank, big_l, x, 0.0)))(f)
    np.testing.assert_allclose(grad("bpda_identity"), probe, rtol=1e-6)
    ridge = jax.grad(lambda x: jnp.sum(probe * defenses.blend(bank, x, ridge_code(bank, x, spec.lam), spec.blend)))(f)
    np.testing.assert_allclose(grad("bpda_ridge"), ridge, rtol=1e-5, atol=1e-6)
    codes = np.asarray(ridge_code(bank, f, 0.1))
    np.testing.assert_allclose(codes @ (np.asarray(bank) @ np.asarray(bank).T + 0.1 * np.eye(6)),
                               np.asarray(f) @ np.asarray(bank).T, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_standard_protocol_with_adaptive_attacks_writes_the_leaderboard(defense_table, tmp_path):
    """The standard protocol on the undefended model and ExFMem: adaptive attacks on the defended
    model only, transfer from the baseline, worst case per setting, leaderboard.json and results.md."""
    config, trained = defense_table
    workdir = str(tmp_path / "workdir")
    shutil.copytree(trained, workdir)
    config = copy.deepcopy(config)
    with config.unlocked():
        config.stages = ("evaluate",)
        config.eval.runs = ("exfmem",)        # evaluate only this trained run (av: the transfer source)
        config.rows = ("exfmem",)
        config.eval.methods = ()
        config.eval.protocol = "standard"
        config.eval.max_examples = 8
        config.eval.standard.update(apgd_steps=3, target_classes=2, square_queries=8, settings_run=("xAV",),
                                    adaptive=("bpda_identity", "bpda_ridge"),
                                    fab=False)  # FAB: tests/attacks/test_fab.py, test_strong_attacks.py
    experiment.run(config, workdir)
    board = json.load(open(os.path.join(workdir, "leaderboard.json")))["entries"]
    entries = {e["model"]: e for e in board}
    assert set(entries) == {"exfmem"}
    assert set(entries["exfmem"]["attacks"]) >= {"apgd-ce/bpda_identity", "apgd-ce/bpda_ridge", "transfer",
                                                 "feature-collision"}
    standard = protocol.ProtocolSpec.from_config(config.eval)   # an undefended model gets neither
    assert not any("bpda" in a or a in ("transfer", "feature-collision")
                   for a in standard.attack_list(has_memory=False, has_transfer=False))
    for e in board:
        assert e["threat_model"]["units"] == config.eval.units and e["n"] == 8
        assert list(e["robust_accuracy"]) == ["xAV"]
        row = e["per_attack"]["xAV"]
        assert all(row["worst"] <= row[a] for a in e["attacks"] if a != "large_eps")
        assert e["robust_accuracy"]["xAV"] == row["worst"] <= e["clean_accuracy"]
        assert {c["check"] for c in e["checklist"]} <= set(protocol.CHECKS)
        assert {c["check"] for c in e["checklist"]} >= {"more_steps", "black_box", "zero_gradient"}
    md = open(os.path.join(workdir, "results.md")).read()
    assert "## Standard protocol" in md and "ExFMem: accuracy per attack" in md
