"""On a trained model: accuracy does not increase with eps, and the evaluation stage writes its files."""
import json
import os

import numpy as np
import pytest

from avjax import experiment


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import importlib.util
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location("cfg", os.path.join(repo, "configs", "synthetic.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("runlocal,modality=av")
    config.data.synthetic.sizes = (384, 32, 96)
    config.data.synthetic.distractor_prob = 0.0
    config.train.batch_size = 32
    config.train.num_epochs = 4
    config.train.lr_steps = (3,)
    config.eval.batch_size = 48
    config.eval.steps = 5
    config.eval.sweep_eps = (0.0, 0.01, 0.02, 0.04, 0.08)
    config.eval.eps_audio_only, config.eval.eps_visual_only, config.eval.eps_joint = 0.04, 0.04, 0.02
    workdir = tmp_path_factory.mktemp("trained")
    out = experiment.run(config, str(workdir))
    return config, workdir, out


@pytest.mark.slow
def test_accuracy_does_not_increase_with_eps(trained):
    _, _, out = trained
    res = out["evaluate"]["av"]
    assert res["clean"] > 40  # trained well above chance (12.5 %)
    for setting in ("xA", "xV", "xAV"):
        acc = res["sweep"][setting]
        assert all(b <= a for a, b in zip(acc, acc[1:])), (setting, acc)
        assert acc[-1] < acc[0]
    for method, summary in res["methods"].items():
        assert summary["xAV"] <= summary["clean"] and summary["xA"] <= summary["clean"], method


@pytest.mark.slow
def test_evaluation_stage_files(trained):
    config, workdir, _ = trained
    data = json.load(open(workdir / "results.json"))
    models = {r["model"] for r in data["records"]}
    assert models == {"av"}
    assert os.path.isfile(workdir / "figures" / "accuracy_vs_eps_pgd.png")
    md = open(workdir / "results.md").read()
    for method in ("FGSM", "PGD", "MIM"):
        assert f"## {method}" in md
    assert np.isfinite([r["accuracy"] for r in data["records"]]).all()
