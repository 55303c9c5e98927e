"""Experiment stages: train the configured runs (resuming), then evaluate them under attack.

Layout of a workdir:
    runs/<name>/checkpoints/   orbax checkpoints of the run (resume point)
    runs/<name>/model/         the best-on-validation model (model.json + variables)
    runs/<name>/train.json     validation history, best epoch, test accuracy
    tb/                        TensorBoard events
    results.json, results.md, figures/
"""
import copy
import json
import logging
import os
import time

import jax

from avjax import model_dir, parallel
from avjax.attacks import ModelFns
from avjax.data import sources as data_sources
from avjax.evaluation import report, robustness

log = logging.getLogger(__name__)
STAGES = ("train", "evaluate")


def run_config(config, name):
    """The config of run `name`: its modality / defense overrides applied."""
    run = config.runs[name]
    c = copy.deepcopy(config)
    with c.unlocked():
        c.model.modality = run.modality
        if run.get("defense"):
            c.train.defense.name = run.defense
    return c


def train(config, workdir, writer=None) -> dict:
    from avjax.train.loop import train_and_evaluate
    sources, transforms = data_sources.build(config.data)
    out = {}
    for name in config.runs:
        rc = run_config(config, name)
        run_dir = os.path.join(workdir, "runs", name)
        summary_path = os.path.join(run_dir, "train.json")
        if os.path.exists(summary_path):
            with open(summary_path) as f:
                out[name] = json.load(f)
            log.info("run %s already trained (test accuracy %.4f)", name, out[name]["test_accuracy"])
            continue
        log.info("== training run %s (%s, defense %s)", name, rc.model.modality, rc.train.defense.name)
        t0 = time.perf_counter()
        result, best_variables = train_and_evaluate(rc, run_dir, sources, transforms,
                                                    writer=writer and writer(name))
        result["wall_s"] = time.perf_counter() - t0
        result["modality"] = rc.model.modality
        if jax.process_index() == 0:
            model_path = os.path.join(run_dir, "model")
            if not os.path.exists(os.path.join(model_path, model_dir.MODEL_CONFIG)):
                model_dir.save_model(model_path, rc.model.to_dict(), best_variables)
            with open(summary_path, "w") as f:
                json.dump(result, f, indent=1)
        out[name] = result
    return out


def models_to_evaluate(config, workdir):
    """{name: model dir}: the trained runs plus `config.eval.models` (e.g. converted originals)."""
    found = {}
    for name in config.runs:
        d = os.path.join(workdir, "runs", name, "model")
        if os.path.exists(os.path.join(d, model_dir.MODEL_CONFIG)):
            found[name] = d
    for name, d in dict(config.eval.get("models", {})).items():
        found[name] = d
    if not found:
        raise FileNotFoundError(f"{workdir}: no trained model to evaluate (run the 'train' stage first)")
    return found


def evaluate(config, workdir) -> dict:
    from avjax.viz.curves import plot_sweep
    sources, transforms = data_sources.build(config.data)
    spec = robustness.EvalSpec.from_config(config.eval)
    mesh = parallel.make_mesh()
    results = {}
    for name, path in models_to_evaluate(config, workdir).items():
        module, model_cfg, variables = model_dir.load_model(path)
        t0 = time.perf_counter()
        res = robustness.evaluate_model(ModelFns(module, variables), sources["test"], transforms["eval"],
                                        spec, batch_size=config.eval.batch_size, mesh=mesh,
                                        max_examples=config.eval.max_examples,
                                        workers=config.data.workers)
        res["modality"] = model_cfg.get("modality", "av")
        if "sweep" in res:
            res["sweep"]["modality"] = res["modality"]
        log.info("evaluated %s in %.1f s: clean %.2f%%", name, time.perf_counter() - t0, res["clean"])
        results[name] = res
    baseline = config.baseline if config.baseline in results else next(iter(results))
    results = {baseline: results[baseline], **{k: v for k, v in results.items() if k != baseline}}
    if jax.process_index() == 0:
        title = f"avjax robustness: {config.data.name}"
        report.write(workdir, results, spec, config, baseline, title)
        sweeps = {n: r["sweep"] for n, r in results.items() if "sweep" in r}
        av = [n for n, r in results.items() if r["modality"] == "av" and n in sweeps]
        if av:
            os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
            plot_sweep(os.path.join(workdir, "figures", f"accuracy_vs_eps_{spec.sweep_method}.png"),
                       sweeps, av[0], f"{config.data.name}: {spec.sweep_method.upper()} accuracy vs eps")
    return results


def run(config, workdir, writer_factory=None):
    unknown = set(config.stages) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; choose from {STAGES}")
    os.makedirs(workdir, exist_ok=True)
    out = {}
    if "train" in config.stages:
        out["train"] = train(config, workdir, writer_factory)
    if "evaluate" in config.stages:
        out["evaluate"] = evaluate(config, workdir)
    return out
