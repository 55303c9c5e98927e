"""Experiment stages: train the configured runs (resuming), then evaluate them under attack.

Layout of a workdir:
    runs/<name>/checkpoints/   orbax checkpoints of the run (resume point)
    runs/<name>/model/         the best-on-validation model (model.json + variables)
    runs/<name>/train.json     validation history, best epoch, test accuracy
    tb/                        TensorBoard events
    results.json, results.md, figures/
With `config.seeds = N > 1` each seed's run has this layout in `seed_<seed>/`, and the top level holds
results.md / results.json / figures / report over the seeds (`run_seeds`).

Below them: `avjax.runs` (which runs, in what order, with which settings, starting from what),
`avjax.config_files` (loading a config, checking its inputs), `avjax.outputs` (results, figures and report).
"""
import json
import logging
import os
import time

import jax

from avjax import compiled, model_dir, parallel
from avjax.attacks import ModelFns
from avjax.config_files import check_inputs, load_config, resolve_data  # noqa: F401 (load_config: public API)
from avjax.data import sources as data_sources
from avjax.errors import ConfigError
from avjax import outputs
from avjax.evaluation import certified, embeddings, localization, memory_diagnostics, progress, protocol, robustness
from avjax.evaluation.robustness import attack_spec_for
from avjax.runs import (defense_of, initial_variables, memory_atom_labels, models_to_evaluate, run_config, seed_config,
                        training_order)

log = logging.getLogger(__name__)
STAGES = ("train", "evaluate")


def train(config, workdir, writer=None) -> dict:
    """Trains every run of the config that `workdir` does not hold trained yet, in dependency order, each resuming
    from its own checkpoints; -> {run: its train summary}."""
    from avjax.train.loop import train_and_evaluate
    sources, transforms = check_inputs(config)
    out = {}
    for name in training_order(config):
        rc = run_config(config, name)
        run_dir = os.path.join(workdir, "runs", name)
        summary_path = os.path.join(run_dir, "train.json")
        if os.path.exists(summary_path):
            with open(summary_path) as f:
                out[name] = json.load(f)
            log.info("run %s already trained (test accuracy %.4f)", name, out[name]["test_accuracy"])
            continue
        log.info("== training run %s (%s, defense %s%s)", name, rc.model.modality, defense_of(config, name),
                 ", memory of run " + config.runs[name].memory_from if config.runs[name].get("memory_from") else "")
        t0 = time.perf_counter()
        init_variables = initial_variables(config, workdir, name, sources, transforms)
        result, best_variables = train_and_evaluate(rc, run_dir, sources, transforms,
                                                    writer=writer and writer(name), init_variables=init_variables)
        if rc.model.get("head") == "crmt" and rc.train.defense.name == "crmt":
            best_variables, result = _crmt_second_step(rc, best_variables, result, sources, transforms)
        result["wall_s"] = time.perf_counter() - t0
        result["modality"] = rc.model.modality
        result["defense"] = defense_of(config, name)
        if jax.process_index() == 0:
            model_path = os.path.join(run_dir, "model")
            if not os.path.exists(os.path.join(model_path, model_dir.MODEL_CONFIG)):
                model_dir.save_model(model_path, rc.model.to_dict(), best_variables)
            with open(summary_path, "w") as f:
                json.dump(result, f, indent=1)
        out[name] = result
    return out


def _crmt_second_step(rc, variables, result, sources, transforms):
    """CRMT's second step on a CRMT run's best weights (avjax.train.crmt); the test accuracy is then the final
    model's, the first step's kept beside it."""
    from avjax.models import build
    from avjax.train import crmt
    module, mesh = build(rc.model), parallel.make_mesh()
    variables, summary = crmt.second_step(rc, module, variables, sources, transforms, mesh=mesh)
    accuracy = crmt.accuracy(module, variables, sources["test"], transforms["eval"], batch_size=rc.eval.batch_size,
                             mesh=mesh, workers=rc.data.workers)
    log.info("CRMT second step: test accuracy %.4f -> %.4f", result["test_accuracy"], accuracy)
    return variables, dict(result, crmt=dict(summary, test_accuracy_first_step=result["test_accuracy"]),
                           test_accuracy=accuracy)


def evaluate(config, workdir) -> dict:
    """Evaluates every trained model of `workdir` (and `eval.models`), reusing stored evaluations, then writes
    the results, figures and report; -> {model: its results}."""
    sources, transforms = data_sources.build(config.data)
    spec = robustness.EvalSpec.from_config(config.eval)
    standard = _standard_spec(config)
    mesh = parallel.make_mesh()
    results = {}
    models = models_to_evaluate(config, workdir)
    baseline_fns = _baseline_fns(config, workdir) if standard else None
    config_json = _evaluation_config_json(config)
    for name, path in models.items():
        module, model_cfg, variables = model_dir.load_model(path)
        fns = ModelFns(module, variables)
        defense = defense_of(config, name)
        modality = model_cfg.get("modality", "av")
        model_spec = attack_spec_for(spec, config.eval, defense, modality)
        transfer = baseline_fns if name != config.baseline and baseline_fns is not None \
            and modality == getattr(baseline_fns.module, "modality", "av") else None
        stored = progress.ModelProgress(workdir, name, progress.fingerprint(
            config_json, path, _baseline_path(workdir, config) if transfer is not None else None))
        res = stored.result()
        if res is not None:
            log.info("%s: evaluated before (%s); its stored results are used", name, stored.root)
        else:
            t0 = time.perf_counter()
            res = _evaluate_model(config, fns, sources, transforms, spec, model_spec, standard, transfer, mesh,
                                  name, stored, memory_atom_labels(workdir, name))
            log.info("evaluated %s in %.1f s: clean %.2f%% (attacker loss %s)", name, time.perf_counter() - t0,
                     res["clean"], model_spec.loss)
            res = stored.finish(res)
        if standard:
            protocol.print_checklist(name, res["standard"])
        res["modality"] = modality
        res["defense"] = defense
        res["attack_loss"] = model_spec.loss
        res["label"] = config.runs[name].get("label", "") if name in config.runs else ""
        res["model_config"] = model_cfg
        res["architecture"] = model_cfg.get("architecture", "classifier")
        if "sweep" in res:
            res["sweep"]["modality"] = res["modality"]
        results[name] = res
        compiled.release_if_many()  # many models x attacks: stay below the process's mapping limit
    baseline = config.baseline if config.baseline in results else next(iter(results))
    order = [n for n in config.get("rows", ()) if n in results] or [baseline]
    results = {n: results[n] for n in order + [k for k in results if k not in order]}
    if jax.process_index() == 0:
        outputs.write_run_outputs(config, workdir, results, models, sources, transforms, spec, baseline, standard)
    return results


def _evaluate_model(config, fns, sources, transforms, spec, model_spec, standard, transfer, mesh, name,
                    stored, atom_labels=None) -> dict:
    """One model's evaluation: the paper's table and sweep, and the standard protocol when asked for."""
    common = dict(batch_size=config.eval.batch_size, mesh=mesh, workers=config.data.workers, name=name,
                  progress=stored)
    res = {"methods": {}}
    if spec.methods or spec.sweep_eps or not standard:  # at least the clean accuracy (the standard protocol has it)
        res = robustness.evaluate_model(fns, sources["test"], transforms["eval"], model_spec,
                                        max_examples=config.eval.max_examples, **common)
    if localization.is_localization_model(fns.module):
        if sources["test"][0].get("box") is None:
            log.info("%s: the data has no object boxes: heat-map figures only, no localization metrics", name)
        else:
            res["localization"] = localization.evaluate(
                fns, sources["test"], transforms["eval"], model_spec, batch_size=config.eval.batch_size, mesh=mesh,
                workers=config.data.workers, name=name,
                max_examples=config.localization.max_examples or config.eval.max_examples)
    dc = config.exfmem.diagnostics
    if dc.examples and memory_diagnostics.has_memory(fns.module):
        res["memory_diagnostics"] = memory_diagnostics.evaluate(
            fns, sources["test"], transforms["eval"], model_spec, method=dc.method, examples=dc.examples,
            blends=tuple(dc.blends), atom_labels=atom_labels, batch_size=config.eval.batch_size, mesh=mesh,
            workers=config.data.workers, name=name)
    ec = config.embeddings
    if ec.examples and fns.module.modality == "av" and not localization.is_localization_model(fns.module):
        res["embeddings"] = embeddings.evaluate(
            fns, sources["test"], transforms["eval"], model_spec, method=ec.method, examples=ec.examples, k=ec.k,
            perplexity=ec.perplexity, seed=ec.seed, batch_size=config.eval.batch_size, mesh=mesh,
            workers=config.data.workers, name=name)
    cc = config.certify
    if cc.examples and fns.module.modality == "av" and not localization.is_localization_model(fns.module):
        res["certified"] = certified.evaluate(
            fns, sources["test"], transforms["eval"], sigma_visual=config.smoothing.sigma_visual,
            sigma_audio=config.smoothing.sigma_audio, modes=tuple(cc.modes), n0=cc.n0, n=cc.n, alpha=cc.alpha,
            draws_per_call=cc.draws_per_call, seed=cc.seed, radii=tuple(cc.radii), examples=cc.examples,
            batch_size=config.eval.batch_size, mesh=mesh, workers=config.data.workers, name=name,
            attack_steps=cc.attack_steps, attack_step_fraction=cc.attack_step_fraction)
    if standard:
        res["standard"] = protocol.evaluate_standard(
            fns, sources["test"], transforms["eval"], standard, transfer_fns=transfer,
            max_examples=config.eval.standard.max_examples or config.eval.max_examples, **common)
        res.setdefault("clean", res["standard"]["clean"])
        res.setdefault("n", res["standard"]["n"])
    return res


def _evaluation_config_json(config) -> str:
    """The config as stored evaluations are keyed by: all of it except what only selects the work
    (`stages`, `eval.runs`), so evaluating more runs later reuses what was evaluated before."""
    data = json.loads(config.to_json(sort_keys=True))
    data.pop("stages", None)
    data.get("eval", {}).pop("runs", None)
    return json.dumps(data, sort_keys=True)


def _baseline_path(workdir, config):
    return os.path.join(workdir, "runs", config.baseline, "model")


PROTOCOLS = ("table", "standard")


def _standard_spec(config):
    """The standard protocol's spec when `eval.protocol` asks for it, else None."""
    if config.eval.protocol not in PROTOCOLS:
        raise ValueError(f"unknown eval.protocol {config.eval.protocol!r}; choose one of {PROTOCOLS}")
    return protocol.ProtocolSpec.from_config(config.eval) if config.eval.protocol == "standard" else None


def _baseline_fns(config, workdir):
    """The undefended baseline model, the source of the checklist's transfer attack (None if absent;
    found among all trained runs, also when `eval.runs` evaluates only some)."""
    path = _baseline_path(workdir, config)
    if not os.path.exists(os.path.join(path, model_dir.MODEL_CONFIG)):
        return None
    module, _, variables = model_dir.load_model(path)
    return ModelFns(module, variables)


def run(config, workdir, writer_factory=None):
    config = resolve_data(config)
    unknown = set(config.stages) - set(STAGES)
    if unknown:
        raise ConfigError(f"unknown stage(s) {sorted(unknown)}; choose from {STAGES}")
    seeds = config.get("seeds", 1)
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a whole number >= 1 (got {seeds!r})")
    if seeds > 1:
        return run_seeds(config, workdir, writer_factory)
    os.makedirs(workdir, exist_ok=True)
    out = {}
    if "train" in config.stages:
        out["train"] = train(config, workdir, writer_factory)
    if "evaluate" in config.stages:
        out["evaluate"] = evaluate(config, workdir)
    return out


def run_seeds(config, workdir, writer_factory=None) -> dict:
    """`config.seeds` runs (seeds config.seed, config.seed + 1, ...), each a whole experiment in
    `workdir/seed_<seed>/` (resumable like any run), then results.md / results.json over the seeds."""
    seeds = [config.seed + k for k in range(config.seeds)]
    out = {"seeds": {}}
    for k, seed in enumerate(seeds):
        log.info("== seed %d (%d of %d)", seed, k + 1, len(seeds))
        factory = writer_factory and (lambda name, seed=seed: writer_factory(f"seed_{seed}/{name}"))
        out["seeds"][seed] = run(seed_config(config, seed), os.path.join(workdir, f"seed_{seed}"), factory)
    if "evaluate" in config.stages and jax.process_index() == 0:
        outputs.write_seed_results(config, workdir, seeds, [out["seeds"][s]["evaluate"] for s in seeds])
    return out
