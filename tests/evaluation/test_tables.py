"""RI, modality attribution and the result files, checked against the appendix and by hand."""
import json

import ml_collections
import numpy as np
import pytest

from avjax.configs.base import base_config
from avjax.evaluation import report, robustness

# Appendix Table 3 (defense vs MIM, AVE): clean, xA, xV, xAV, printed Avg, printed RI.
AVE_MIM = {
    "None": (70.40, 15.17, 10.20, 0.25, 8.54, 0.00),
    "Unimodal A": (29.85, 0.00, 29.85, 0.00, 9.95, -39.14),
    "Unimodal V": (65.17, 65.17, 5.22, 5.22, 25.20, 11.43),
    "PCL": (61.94, 61.44, 7.21, 6.97, 25.21, 8.21),
    "MaxSim": (71.64, 15.17, 12.94, 8.96, 12.36, 5.06),
    "Full": (71.39, 52.99, 14.43, 11.44, 26.29, 18.74),
}


def test_ri_reproduces_the_appendix_rows():
    base = dict(zip(("clean", "xA", "xV", "xAV"), AVE_MIM["None"][:4]))
    base["avg"] = np.mean(AVE_MIM["None"][1:4])
    for name, (clean, xa, xv, xav, avg, ri) in AVE_MIM.items():
        row = {"clean": clean, "avg": np.mean([xa, xv, xav])}
        assert row["avg"] == pytest.approx(avg, abs=0.01), name
        assert robustness.robustness_improvement(row, base) == pytest.approx(ri, abs=0.015), name


def test_summary_accuracies_and_attribution():
    #                  ex: 0     1     2     3     4     5
    correct = {"clean": np.array([1, 1, 1, 1, 1, 0], bool),
               "xA":    np.array([0, 1, 1, 1, 1, 0], bool),   # audio alone fools ex 0
               "xV":    np.array([1, 0, 1, 1, 1, 0], bool),   # visual alone fools ex 1
               "xAV":   np.array([0, 0, 0, 1, 1, 0], bool)}   # joint fools 0, 1 and 2
    s = robustness.summarize(correct)
    assert s["clean"] == pytest.approx(500 / 6)
    assert s["avg"] == pytest.approx(np.mean([s["xA"], s["xV"], s["xAV"]]))
    assert s["joint_successes"] == 3
    assert s["joint_only_share"] == pytest.approx(100 / 3)        # only ex 2 needs both
    assert s["joint_after_audio_share"] == pytest.approx(100 / 3)
    assert s["joint_after_visual_share"] == pytest.approx(100 / 3)


def test_result_files(tmp_path):
    spec = robustness.EvalSpec.from_config(base_config().eval, methods=("fgsm",), sweep_eps=(0.0, 0.01))
    per = {"clean": np.array([1, 1, 0], bool), "xA": np.array([1, 0, 0], bool),
           "xV": np.array([0, 1, 0], bool), "xAV": np.array([0, 0, 0], bool)}
    res = {"n": 3, "clean": 200 / 3, "modality": "av",
           "methods": {"fgsm": robustness.summarize(per)},
           "sweep": {"eps": [0.0, 0.01], "method": "pgd", "xA": [66.7, 33.3], "xV": [66.7, 33.3],
                     "xAV": [66.7, 0.0]}}
    uni = {"n": 3, "clean": 100 / 3, "modality": "audio",
           "methods": {"fgsm": robustness.summarize({**per, "clean": np.array([1, 0, 0], bool)})}}
    config = ml_collections.ConfigDict({"seed": 3, "x": 1})
    recs = report.write(str(tmp_path), {"av": res, "audio": uni}, spec, config, "av", "title")
    data = json.load(open(tmp_path / "results.json"))
    assert len(data["records"]) == len(recs) == 2 + 2 * 3 + 2 * 3
    fgsm = [r for r in recs if r["attack"] == "fgsm" and r["model"] == "av"]
    assert {(r["setting"], r["eps_visual"], r["eps_audio"]) for r in fgsm} == {
        ("xA", 0.0, 0.012), ("xV", 0.012, 0.0), ("xAV", 0.006, 0.006)}
    for r in recs:
        assert {"seed", "config_hash", "versions", "units", "n", "accuracy"} <= set(r)
    md = open(tmp_path / "results.md").read()
    assert "| model | ✓AV | ✗A | ✗V | ✗AV | Avg | RI |" in md
    assert "| av | 66.67 | 33.33 | 33.33 | 0.00 | 22.22 | 0.00 |" in md
