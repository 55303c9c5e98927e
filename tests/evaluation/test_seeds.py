"""Results over seeds: closed-form statistics, findings that name the seed where they fail, and a real
two-seed run that resumes without retraining."""
import json
import os
import re

import numpy as np
import pytest

from avjax import experiment
from avjax.evaluation import seeds


def _draws(s, n, replicates=2000):
    return seeds.bootstrap_indices(s, n, replicates=replicates, seed=0)


def test_interval_mean_and_std_are_over_seeds():
    correct = np.zeros((3, 100), bool)
    correct[0, :50] = correct[1, :60] = correct[2, :70] = True
    iv = seeds.interval(correct, _draws(3, 100), 0.95)
    assert iv.per_seed == (50.0, 60.0, 70.0)
    assert iv.mean == pytest.approx(60.0) and iv.std == pytest.approx(10.0)  # ddof=1
    assert iv.lo < 60.0 < iv.hi and 45.0 < iv.lo and iv.hi < 75.0


def test_interval_of_a_constant_is_a_point_and_narrows_with_more_examples():
    ones = seeds.interval(np.ones((2, 40), bool), _draws(2, 40), 0.95)
    assert (ones.mean, ones.std, ones.lo, ones.hi) == (100.0, 0.0, 100.0, 100.0)
    rng = np.random.default_rng(0)
    small = seeds.interval(rng.random((3, 50)) < 0.5, _draws(3, 50), 0.95)
    large = seeds.interval(rng.random((3, 5000)) < 0.5, _draws(3, 5000, 500), 0.95)
    assert (large.hi - large.lo) < (small.hi - small.lo) / 4


def _results(accuracies: dict, n=20):
    """One seed's evaluation with given clean / xA accuracies per model (exact on n examples)."""
    out = {}
    for name, (modality, clean, x_a) in accuracies.items():
        cells = {"clean": clean, "xA": x_a, "xV": clean, "xAV": x_a}
        per = {c: [i < round(a * n / 100) for i in range(n)] for c, a in cells.items()}
        out[name] = {"modality": modality, "defense": "none", "architecture": "classifier",
                     "methods": {"pgd": {"per_example": per}}}
    return out


def test_findings_hold_only_when_every_seed_agrees_and_name_the_failing_seed():
    good = {"av": ("av", 90, 30), "audio": ("audio", 40, 5), "visual": ("visual", 60, 60)}
    bad = {"av": ("av", 90, 70), "audio": ("audio", 40, 5), "visual": ("visual", 60, 60)}
    per_seed = [_results(good), _results(bad), _results(good)]
    found = seeds.findings(per_seed, {"av": "av", "audio": "audio", "visual": "visual"}, ["pgd"],
                           replicates=200, confidence=0.95, seed=0)
    assert [f.holds for f in found] == [True, True, False]
    assert found[0].margins == (30.0, 30.0, 30.0)
    assert found[2].margins == (30.0, -10.0, 30.0) and "does NOT hold in seed(s) 1" in found[2].text()
    assert seeds.findings(per_seed, {"av": "av", "audio": "audio"}, ["pgd"], replicates=10, confidence=0.95,
                          seed=0) == []


def test_seeds_evaluated_on_different_examples_are_refused():
    a = _results({"av": ("av", 90, 30)}, n=20)
    b = _results({"av": ("av", 90, 30)}, n=10)
    with pytest.raises(ValueError, match="different numbers of examples"):
        seeds.aggregate([a, b], ["pgd"], replicates=10, confidence=0.95, seed=0)


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("two_seeds")
    config = experiment.load_config("configs/synthetic.py", "runlocal", **{
        "seeds": 2, "report.examples": 2, "eval.max_examples": 8, "eval.methods": ("pgd",),
        "eval.sweep_eps": (0.0, 0.04)})
    experiment.run(config, str(workdir))
    return workdir, config


@pytest.mark.slow
def test_two_seeds_give_one_table_with_spread_and_findings(two_seeds):
    workdir, config = two_seeds
    text = open(workdir / "results.md").read()
    assert "**2 seeds** (0, 1" in text and "## PGD" in text and "## Findings" in text
    assert text.count("holds in every seed") + text.count("does NOT hold") == 3
    summary = json.load(open(workdir / "results.json"))["summary"]
    for name in ("av", "audio", "visual"):
        per_seed = []
        for seed in (0, 1):
            records = json.load(open(workdir / f"seed_{seed}" / "results.json"))["records"]
            per_seed.append(next(r["accuracy"] for r in records if r["model"] == name and r["attack"] == "pgd"
                                 and r["setting"] == "xA" and not r.get("sweep")))
        cell = summary[name]["pgd"]["xA"]
        assert cell["per_seed"] == pytest.approx(per_seed)
        assert cell["mean"] == pytest.approx(np.mean(per_seed)) and cell["lo"] <= cell["mean"] <= cell["hi"]
    assert os.path.isfile(workdir / "figures" / "accuracy_vs_eps_pgd.png")
    page = open(workdir / "report" / "index.html", encoding="utf-8").read()
    assert "2 seeds" in page and "(the run of seed 0)" in page
    assert not os.path.exists(workdir / "seed_0" / "report")  # one report, at the top


@pytest.mark.slow
def test_two_seeds_train_different_models_and_resume_without_retraining(two_seeds):
    workdir, config = two_seeds
    accs = [json.load(open(workdir / f"seed_{s}" / "runs" / "av" / "train.json"))["history"] for s in (0, 1)]
    assert accs[0] != accs[1]  # another init and data order, not a copy
    stamps = {p: os.path.getmtime(p) for p in (workdir / "seed_1" / "runs" / "av" / "train.json",
                                                 workdir / "seed_1" / "runs" / "av" / "model" / "model.json")}
    before = open(workdir / "results.md").read()
    experiment.run(config, str(workdir))
    assert {p: os.path.getmtime(p) for p in stamps} == stamps
    assert open(workdir / "results.md").read() == before


def _defense_results(rows: dict, n=40):
    """One seed's evaluation: {name: (defense, label, {cell: accuracy})}, per example the first k correct."""
    out = {}
    for name, (defense, label, acc) in rows.items():
        per = {c: [i < round(a * n / 100) for i in range(n)] for c, a in acc.items()}
        out[name] = {"modality": "av", "defense": defense, "label": label, "architecture": "classifier",
                     "methods": {"pgd": {"per_example": per}}}
    return out


def test_defense_findings_are_the_tables_ri_seed_by_seed():
    from avjax.evaluation.robustness import robustness_improvement
    none = {"clean": 90, "xA": 50, "xV": 60, "xAV": 40}
    full = {"clean": 90, "xA": 60, "xV": 60, "xAV": 50}                      # RI +6.67
    hurts = {"clean": 85, "xA": 45, "xV": 60, "xAV": 40}                     # RI -6.67, clean -5
    minsim, maxsim = {"clean": 90, "xA": 55, "xV": 60, "xAV": 40}, none       # RI +1.67 vs 0
    at_a = {"clean": 90, "xA": 75, "xV": 60, "xAV": 40}                       # +25 on xA
    seed = {"av": ("none", "None", none), "minsim_exfmem": ("minsim+exfmem", "MinSim+ExFMem", full),
            "exfmem": ("exfmem", "ExFMem", hurts), "minsim": ("minsim", "MinSim", minsim),
            "maxsim": ("maxsim", "MaxSim", maxsim), "at_a": ("at_a", "AT (A)", at_a)}
    found = seeds.defense_findings([_defense_results(seed)] * 3, "av", ["pgd"], replicates=200, confidence=0.95,
                                   seed=0)
    by_claim = {f.claim: f for f in found}
    full_ri = by_claim["PGD: MinSim+ExFMem RI > 0 (more robust than None)"]
    summary = lambda acc: {**{k: float(v) for k, v in acc.items()}, "avg": (acc["xA"] + acc["xV"] + acc["xAV"]) / 3}  # noqa: E731
    assert full_ri.margins[0] == pytest.approx(robustness_improvement(summary(full), summary(none)))
    assert full_ri.holds and not by_claim["PGD: ExFMem RI > 0 (more robust than None)"].holds
    assert by_claim["PGD: MinSim RI > MaxSim RI"].margins[0] == pytest.approx(5 / 3)
    control = by_claim["PGD: AT (A) beats None on ✗A by >= 10 points or half of what the attack takes from None "
                       "(positive control)"]
    assert control.margins[0] == pytest.approx(15)              # None loses 40 points on ✗A: 10 required
    # where the attack takes only 5 points from None, half of that (2.5) is required
    mild = {"av": ("none", "None", {**none, "xA": 85}), "at_a": ("at_a", "AT (A)", {**none, "xA": 90})}
    (mild_control, _) = seeds.defense_findings([_defense_results(mild)], "av", ["pgd"], replicates=50,
                                               confidence=0.95, seed=0)
    assert mild_control.margins[0] == pytest.approx(2.5) and mild_control.holds
    clean = by_claim["ExFMem keeps clean accuracy within 2 points of None"]
    assert clean.margins[0] == pytest.approx(-3) and not clean.holds
    assert by_claim["MinSim keeps clean accuracy within 2 points of None"].holds
    # no defended rows (the main job): no defense findings
    plain = {"av": ("none", "None", none)}
    assert seeds.defense_findings([_defense_results(plain)] * 2, "av", ["pgd"], replicates=10, confidence=0.95,
                                  seed=0) == []


def test_the_required_gain_of_the_positive_control_is_capped_by_what_the_attack_takes():
    from avjax.evaluation.report import required_gain
    assert required_gain(10.0, 95.0, 50.0) == 10.0                      # the attack takes 45 points: 10 required
    assert required_gain(10.0, 92.5, 91.5) == pytest.approx(0.5)        # it takes 1 point: half of it
    assert required_gain(10.0, 90.0, 92.0) == 0.0


def _with_sweep(results: dict, curves: dict, eps=(0.0, 0.01, 0.02), n=40):
    """Adds a sweep to each model: `curves[name] = {setting: [accuracy per eps]}` (eps 0 = the clean accuracy),
    per example the first k correct."""
    for name, curve in curves.items():
        per = {s: [[i < round(a * n / 100) for i in range(n)] for a in accs] for s, accs in curve.items()}
        results[name]["sweep"] = {"eps": list(eps), "method": "pgd", "n": n,
                                  **{s: list(map(float, accs)) for s, accs in curve.items()}, "per_example": per}
    return results


def test_defense_findings_along_the_sweep_are_the_ri_at_each_eps():
    none = {"clean": 90, "xA": 50, "xV": 60, "xAV": 40}
    rows = {"av": ("none", "None", none), "exfmem": ("exfmem", "ExFMem", none),
            "minsim": ("minsim", "MinSim", none), "maxsim": ("maxsim", "MaxSim", none)}
    curves = {"av": {"xA": [90, 70, 50], "xV": [90, 80, 60], "xAV": [90, 60, 40]},
              "exfmem": {"xA": [90, 75, 45], "xV": [90, 80, 60], "xAV": [90, 60, 40]},     # RI +5/3, then -5/3
              "minsim": {"xA": [90, 70, 50], "xV": [90, 80, 60], "xAV": [90, 67.5, 47.5]}, # +2.5 over MaxSim
              "maxsim": {"xA": [90, 70, 50], "xV": [90, 80, 60], "xAV": [90, 60, 40]}}
    per_seed = [_with_sweep(_defense_results(rows), curves) for _ in range(3)]
    found = seeds.defense_sweep_findings(per_seed, "av", replicates=100, confidence=0.95, seed=0)
    by = {(f.claim, e): f for e, f in found}
    assert {e for e, _ in found} == {0.01, 0.02}                  # eps 0 is the clean point: no claim there
    exf = "PGD: ExFMem RI > 0 (more robust than None)"
    assert by[exf, 0.01].margins == pytest.approx((5 / 3,) * 3) and by[exf, 0.01].holds
    assert by[exf, 0.02].margins[0] == pytest.approx(-5 / 3) and not by[exf, 0.02].holds
    assert by["PGD: MinSim RI > MaxSim RI", 0.02].margins[0] == pytest.approx(2.5)
    assert by[exf, 0.01].difference.mean == pytest.approx(5 / 3)
    assert by[exf, 0.01].difference.lo <= 5 / 3 <= by[exf, 0.01].difference.hi
    text = "\n".join(seeds.sweep_findings_markdown(found, 0.95))
    assert "## Defense findings along the eps sweep" in text and "| claim | ε = 0.01 | ε = 0.02 |" in text
    assert re.search(rf"\| {re.escape(exf)} \| ✓ \+1\.67 \[[-+\d.]+, [-+\d.]+\] \(3/3\) \| "
                     rf"✗ -1\.67 \[[-+\d.]+, [-+\d.]+\] \(0/3\) \|", text), text
    # evaluations without per-example sweeps (stored before they were kept) give no sweep findings
    for r in per_seed:
        del r["exfmem"]["sweep"]["per_example"]
    assert seeds.defense_sweep_findings(per_seed, "av", replicates=10, confidence=0.95, seed=0) == []
