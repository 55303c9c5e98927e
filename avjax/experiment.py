"""Experiment stages: train the configured runs (resuming), then evaluate them under attack.

Layout of a workdir:
    runs/<name>/checkpoints/   orbax checkpoints of the run (resume point)
    runs/<name>/model/         the best-on-validation model (model.json + variables)
    runs/<name>/train.json     validation history, best epoch, test accuracy
    tb/                        TensorBoard events
    results.json, results.md, figures/
With `config.seeds = N > 1` each seed's run has this layout in `seed_<seed>/`, and the top level holds
results.md / results.json / figures / report over the seeds (`run_seeds`).
"""
import copy
import dataclasses
import glob
import json
import logging
import os
import time

import jax
import numpy as np

from avjax import compiled, model_dir, parallel
from avjax.attacks import ModelFns
from avjax.data import sources as data_sources
from avjax.errors import ConfigError, MissingInput
from avjax.evaluation import embeddings, localization, memory_diagnostics, progress, protocol, report, robustness
from avjax.models import build

log = logging.getLogger(__name__)
STAGES = ("train", "evaluate")


def run_config(config, name):
    """The config of run `name`: its modality / defense / memory / fine-tuning overrides applied."""
    run = config.runs[name]
    c = copy.deepcopy(config)
    with c.unlocked():
        c.model.modality = run.modality
        if run.get("fusion"):
            c.model.fusion = run.fusion
        if run.get("defense"):
            c.train.defense.name = run.defense
        if run.get("memory_from"):
            c.model.memory.size = config.exfmem.size
            ft = config.exfmem.finetune
            c.train.num_epochs = ft.num_epochs or c.train.num_epochs
            c.train.lr_steps = tuple(ft.lr_steps) or c.train.lr_steps
            c.train.batch_size = ft.batch_size or c.train.batch_size
            if ft.lr:
                c.train.lr = type(c.train.lr)({k: ft.lr for k in c.train.lr})
        if run.get("adversarial"):
            c.train.adversarial.threat = run.adversarial
            ft = config.train.adversarial.finetune
            c.train.num_epochs = ft.num_epochs or c.train.num_epochs
            c.train.lr_steps = tuple(ft.lr_steps) if ft.num_epochs else c.train.lr_steps
        adversarial_threat_model(c)
    return c


def adversarial_threat_model(c):
    """Resolves `c.train.adversarial`'s eps (in place): the evaluation's eps of the threat's setting (xA:
    eps_audio_only, xV: eps_visual_only, xAV: eps_joint on each) x eps_scale, in the evaluation's units, so that
    the model is trained against the threat it is evaluated under (and the training hash covers it)."""
    adv = c.train.get("adversarial")
    if adv is None or not adv.threat:
        return
    ev = c.eval
    eps_v, eps_a = {"A": (0.0, ev.eps_audio_only), "V": (ev.eps_visual_only, 0.0),
                    "AV": (ev.eps_joint, ev.eps_joint)}.get(adv.threat, (0.0, 0.0))
    adv.eps_visual, adv.eps_audio = float(eps_v * adv.eps_scale), float(eps_a * adv.eps_scale)
    adv.units, adv.mean, adv.std = ev.units, tuple(ev.mean), tuple(ev.std)


def training_order(config) -> list[str]:
    """Run names, every run after the runs it starts from or takes its memory from."""
    order, pending = [], list(config.runs)
    while pending:
        ready = [n for n in pending if all(d in order for d in _dependencies(config, n))]
        if not ready:
            raise ValueError(f"runs {pending} depend on runs that are missing or on each other: "
                             + ", ".join(f"{n} <- {_dependencies(config, n)}" for n in pending))
        order += ready
        pending = [n for n in pending if n not in ready]
    return order


def _dependencies(config, name):
    run = config.runs[name]
    return [d for d in (run.get("init_from"), run.get("memory_from")) if d]


def _initial_variables(config, workdir, name, sources, transforms):
    """Variables a run starts from: another run's latest weights and/or a memory built from a run."""
    from avjax.train.loop import latest_variables
    run = config.runs[name]
    variables = None
    if run.get("init_from"):
        variables = latest_variables(run_config(config, run.init_from), os.path.join(workdir, "runs", run.init_from),
                                     sources, transforms)
        log.info("run %s starts from the latest weights of run %s", name, run.init_from)
    if run.get("memory_from"):
        memory = build_memory(config, workdir, name, sources, transforms)
        if variables is None:
            raise ValueError(f"run {name}: a memory run needs `init_from` (the run to fine-tune)")
        variables = {**variables, "memory": memory}
    return variables


def memory_path(workdir, name) -> str:
    return os.path.join(workdir, "runs", name, "memory.npz")


def memory_atom_labels(workdir, name):
    """The classes of the examples run `name`'s memory atoms were stored from (None: no memory, or one built
    before labels were kept)."""
    path = memory_path(workdir, name)
    if not os.path.exists(path):
        return None
    with np.load(path) as f:
        return f["labels"] if "labels" in f.files else None


def build_memory(config, workdir, name, sources, transforms) -> dict:
    """The `memory` collection of run `name`, built (once; kept in runs/<name>/memory.npz) from the
    features of run `memory_from` (see avjax.train.memory_bank)."""
    from avjax.defenses.memory import memory_collection
    from avjax.train.loop import latest_variables
    from avjax.train.memory_bank import collect_features
    source_run = config.runs[name].memory_from
    path = memory_path(workdir, name)
    if os.path.exists(path):
        with np.load(path) as f:
            return memory_collection(f["visual"], f["audio"])
    rc = run_config(config, source_run)
    source_dir = os.path.join(workdir, "runs", source_run)
    ex = config.exfmem
    if ex.source == "eval_best":
        module, _, variables = model_dir.load_model(os.path.join(source_dir, "model"))
    else:
        module, variables = build(rc.model), latest_variables(rc, source_dir, sources, transforms)
    t0 = time.perf_counter()
    banks = collect_features(module, variables, sources, transforms, size=ex.size, source=ex.source,
                             batch_size=ex.batch_size or rc.train.batch_size, seed=config.seed,
                             mesh=parallel.make_mesh(), workers=config.data.workers)
    log.info("memory of run %s: %d x %d visual / audio features of run %s (%s) in %.1f s", name, ex.size,
             banks["visual"].shape[1], source_run, ex.source, time.perf_counter() - t0)
    if jax.process_index() == 0:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.savez(path + ".tmp.npz", **banks)
        os.replace(path + ".tmp.npz", path)
    return memory_collection(banks["visual"], banks["audio"])


TORCHVISION_RESNET18 = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


def check_visual_init(config):
    """A paper config trains ResNet18 from ImageNet weights: refuse to silently train it from scratch."""
    tc = config.train
    if tc.get("visual_init_required") and not tc.visual_init:
        raise MissingInput(
            f"{config.data.name}: the paper fine-tunes ResNet18 from ImageNet weights, and none were given. Pass "
            "--config.train.visual_init=<resnet18 .pth or .safetensors> (torchvision's file: "
            f"{TORCHVISION_RESNET18}, or torch.save(torchvision.models.resnet18(weights='IMAGENET1K_V1')"
            ".state_dict(), 'resnet18.pth')), or --config.train.visual_init=none to train the trunk from "
            "scratch on purpose.")
    if tc.visual_init and tc.visual_init != "none" and not os.path.isfile(os.path.expanduser(tc.visual_init)):
        raise MissingInput(f"train.visual_init: no such file {tc.visual_init!r} (a torchvision resnet18 "
                                f".pth or .safetensors, e.g. {TORCHVISION_RESNET18})")


def check_inputs(config):
    """-> (sources, transforms) of the config's data, after checking the ImageNet weights a paper config needs:
    when both the data and the weights are missing, one error names both."""
    problems, data = [], None
    try:
        check_visual_init(config)
    except MissingInput as e:
        problems.append(str(e))
    try:
        data = data_sources.build(config.data)
    except MissingInput as e:
        problems.append(str(e))
    if problems:
        raise MissingInput("\n\n".join(problems))
    return data


def train(config, workdir, writer=None) -> dict:
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
        init_variables = _initial_variables(config, workdir, name, sources, transforms)
        result, best_variables = train_and_evaluate(rc, run_dir, sources, transforms,
                                                    writer=writer and writer(name), init_variables=init_variables)
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


def defense_of(config, name) -> str:
    """'none', or the run's defenses joined by '+' (e.g. 'minsim+exfmem')."""
    if name not in config.runs:
        return "none"
    run = config.runs[name]
    parts = [run.defense] if run.get("defense") not in ("", "none", None) else []
    if run.get("memory_from"):
        parts.append("exfmem")
    if run.get("adversarial"):
        parts.append(f"at_{run.adversarial.lower()}")
    return "+".join(parts) or "none"


def extra_models(spec) -> dict[str, str]:
    """`eval.models`: 'name=DIR,name2=DIR2' or a JSON object {"name": "DIR"} (a mapping passes through)."""
    if not spec:
        return {}
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as e:
            raise ValueError(f"eval.models: not a JSON object ({e}): {spec!r}") from e
    if isinstance(spec, str):
        pairs = [item.partition("=") for item in spec.split(",") if item.strip()]
        bad = [name for name, eq, d in pairs if not (eq and name.strip() and d.strip())]
        if bad:
            raise ValueError(f"eval.models: write name=DIR, comma separated (got {spec!r})")
        spec = {name.strip(): d.strip() for name, _, d in pairs}
    models = {str(name): os.fspath(d) for name, d in dict(spec).items()}
    for name, d in models.items():
        if not os.path.exists(os.path.join(d, model_dir.MODEL_CONFIG)):
            raise FileNotFoundError(f"eval.models: {name}={d} is not an avjax model directory (no "
                                    f"{model_dir.MODEL_CONFIG}; convert an original checkpoint with "
                                    "python -m avjax.porting.convert SOURCE DIR)")
    return models


def models_to_evaluate(config, workdir):
    """{name: model dir}: the trained runs plus `config.eval.models` (e.g. converted originals)."""
    found = {}
    for name in config.runs:
        d = os.path.join(workdir, "runs", name, "model")
        if os.path.exists(os.path.join(d, model_dir.MODEL_CONFIG)):
            found[name] = d
    found.update(extra_models(config.eval.get("models", "")))
    wanted = tuple(config.eval.get("runs", ()))
    if wanted:
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise ValueError(f"eval.runs names {missing}, which are not trained in {workdir} (found {sorted(found)})")
        found = {n: d for n, d in found.items() if n in wanted}
    if not found:
        raise FileNotFoundError(f"{workdir}: no trained model to evaluate (run the 'train' stage first)")
    return found


def evaluate(config, workdir) -> dict:
    from avjax.viz.curves import plot_sweep
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
        title = f"avjax robustness: {config.data.name}"
        report.write(workdir, results, spec, config, baseline, title, standard=standard)
        sweeps = {n: r["sweep"] for n, r in results.items() if "sweep" in r}
        av = [n for n, r in results.items() if r["modality"] == "av" and n in sweeps]
        if av:
            os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
            plot_sweep(os.path.join(workdir, "figures", f"accuracy_vs_eps_{spec.sweep_method}.png"),
                       sweeps, av[0], f"{config.data.name}: {spec.sweep_method.upper()} accuracy vs eps")
        classes = class_names(config)
        plot_all_embeddings(config, workdir, results, baseline, classes)
        for name in results:
            if results[name].get("architecture") == "localization" and config.localization.figure_examples:
                plot_localization(config, workdir, name, models[name], sources, transforms, spec)
        if config.report.examples:
            write_html_report(config, workdir, results, models, sources, transforms, spec, baseline)
    return results


def plot_all_embeddings(config, workdir, results, baseline, classes):
    """figures/embeddings_<model>.png per model (each modality's t-SNE), and figures/embeddings_joint.png: the
    joint t-SNE of audio and visual features of the baseline and, beside it, of the MinSim model (Figs. 5/6)."""
    from avjax.viz.embeddings import plot_embeddings, plot_joint_embeddings
    embedded = {name: res for name, res in results.items() if "embeddings" in res}
    if not embedded:
        return
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    for name, res in embedded.items():
        plot_embeddings(os.path.join(workdir, "figures", f"embeddings_{name}.png"), res["embeddings"],
                        classes, f"{config.data.name}: {res.get('label') or name}")
    joint = {n: r for n, r in embedded.items() if "joint" in r["embeddings"]["tsne"]}  # (not in older evaluations)
    if not joint:
        return
    first = baseline if baseline in joint else next(iter(joint))
    panels = [first] + [n for n, r in joint.items() if r.get("defense") == "minsim" and n != first][:1]
    plot_joint_embeddings(os.path.join(workdir, "figures", "embeddings_joint.png"),
                          {report.label(n, embedded[n]): embedded[n]["embeddings"] for n in panels}, classes,
                          f"{config.data.name}: audio and visual features in one t-SNE, clean and attacked")


def write_html_report(config, workdir, results, models, sources, transforms, spec, baseline,
                      gallery_note="", figures=None) -> str:
    """workdir/report/index.html: results.md, the figures, and `config.report.examples` test examples of
    one AV model (`report.model`, else the baseline when it is AV, else the first AV model) under
    `report.method` in the three settings."""

    from avjax.data import pipeline
    from avjax.evaluation import gallery
    from avjax.viz import html_report
    rc = config.report
    av = [n for n, r in results.items() if r["modality"] == "av"]
    name = rc.model or (baseline if baseline in av else (av[0] if av else baseline))
    if name not in models:
        raise ValueError(f"report.model={name!r} is not an evaluated model (evaluated: {sorted(models)})")
    module, model_cfg, variables = model_dir.load_model(models[name])
    model_spec = attack_spec_for(spec, config.eval, defense_of(config, name), model_cfg.get("modality", "av"))
    batch = next(iter(pipeline.eval_dataset(sources["test"], transforms["eval"], batch_size=rc.examples,
                                            keep_ids=True, shard_index=0, shard_count=1)))
    n = int(np.sum(batch["mask"]))
    found = gallery.collect(ModelFns(module, variables), batch, model_spec, rc.method)
    classes = class_names(config)
    rate = config.data.synthetic.sample_rate if config.data.name == "synthetic" else config.data.preprocess.audio_rate
    with open(os.path.join(workdir, "results.md")) as f:
        results_md = f.read()
    path = html_report.write(
        os.path.join(workdir, "report"), title=f"avjax robustness: {config.data.name}", results_md=results_md,
        figures=figures if figures is not None else sorted(glob.glob(os.path.join(workdir, "figures", "*.png"))),
        gallery=_first(found, n), classes=classes, ids=[str(i) for i in batch["id"][:n]], sample_rate=rate,
        model=results[name].get("label") or name,
        note=f"The gallery shows {n} test examples of {results[name].get('label') or name}{gallery_note}; "
             f"attack settings and units as in the tables "
             f"(eval.units = {spec.units}).")
    log.info("report: %s", path)
    return path


def plot_localization(config, workdir, name, path, sources, transforms, spec) -> list[str]:
    """figures/localization_<model>_<method>.png: heat maps of the first `localization.figure_examples`
    test examples, clean and under each attack of `eval.methods` (appendix Fig. 4)."""
    from avjax.data import pipeline
    from avjax.viz.heatmaps import plot_heatmap_grid
    module, _, variables = model_dir.load_model(path)
    fns = ModelFns(module, variables)
    model_spec = attack_spec_for(spec, config.eval, defense_of(config, name), "av")
    n = config.localization.figure_examples
    batch = next(iter(pipeline.eval_dataset(sources["test"], transforms["eval"], batch_size=n,
                                            shard_index=0, shard_count=1)))
    n = int(np.sum(batch["mask"]))
    maps = localization.heatmaps(fns, batch, model_spec, model_spec.methods)
    classes = class_names(config)
    out = []
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    for method in model_spec.methods:
        keys = ["clean"] + [f"{method}/{s}" for s in robustness.SETTINGS]
        preds = {k: [classes[int(c)] for c in maps[k][2][:n]] for k in keys}
        figure = os.path.join(workdir, "figures", f"localization_{name}_{method}.png")
        plot_heatmap_grid(figure, {k: (maps[k][0][:n], maps[k][1][:n]) for k in keys}, method,
                          labels=[f"true: {classes[int(c)]}" for c in batch["label"][:n]], predictions=preds,
                          boxes=batch["box"][:n] if "box" in batch else None,
                          title=f"{config.data.name}: where {name} hears the sound, clean and under "
                                f"{method.upper()}")
        out.append(figure)
    return out


def class_names(config) -> list[str]:
    """Display names of the classes: the config's or the dataset preset's; `class k` for the synthetic data."""
    if config.data.get("classes"):
        return list(config.data.classes)
    if config.data.name == "synthetic":
        return [f"class {k}" for k in range(config.model.num_classes)]
    from avjax.data import layout_a
    return list(layout_a.class_names(config.data))


def _first(tree, n):
    """The first n examples of every per-example array of a gallery (the batch is padded)."""
    if isinstance(tree, dict):
        return {k: _first(v, n) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(_first(v, n) for v in tree)
    return tree[:n] if isinstance(tree, np.ndarray) and tree.ndim >= 1 else tree


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


def attack_spec_for(spec, eval_cfg, defense, modality):
    """The evaluation spec of one model: defended audio-visual models are attacked with
    `eval.defended_loss` (the released defense evaluation: CE + cos), every other model with `eval.loss`."""
    if defense != "none" and modality == "av" and eval_cfg.get("defended_loss"):
        return dataclasses.replace(spec, loss=eval_cfg.defended_loss)
    return spec


def resolve_data(config):
    """Fill what a prepared folder (`data.preset = 'folder'`, configs/folder.py) decides: its classes,
    their number, and the dataset's name (the folder's) for the report. Other configs pass unchanged."""
    if config.data.get("preset") != "folder":
        return config
    from avjax.data import layout_a
    classes = layout_a.folder_classes(config.data.root)
    with config.unlocked():
        config.data.classes = classes
        config.model.num_classes = len(classes)
        config.data.name = config.data.name or os.path.basename(os.path.normpath(config.data.root))
    log.info("%s: %d classes from %s: %s", config.data.name, len(classes), config.data.root, ", ".join(classes))
    return config


def load_config(path, variants: str = "", **overrides):
    """The config of a config file (what `--config=path:variants` gives `python -m avjax.main`), with
    `overrides` as dotted field names (`load_config(p, "runlocal", **{"eval.steps": 5})`), for notebooks
    and scripts. An unknown field is an error, as on the command line."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"avjax_config_{abs(hash(os.path.abspath(path)))}", path)
    if spec is None or not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such config file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variants or None)
    for field, value in overrides.items():
        *parents, leaf = field.split(".")
        node = config
        for name in parents:
            node = node[name]
        if leaf not in node:
            raise KeyError(f"{path}: config has no field {field!r}")
        node[leaf] = value
    return config


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


def seed_config(config, seed):
    """The single-seed config of one of `config.seeds` runs (its own HTML report is left to the
    aggregate, which builds one report for all seeds)."""
    c = copy.deepcopy(config)
    with c.unlocked():
        c.seed, c.seeds = seed, 1
        c.report.examples = 0
    return c


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
        write_seed_results(config, workdir, seeds, [out["seeds"][s]["evaluate"] for s in seeds])
    return out


def write_seed_results(config, workdir, seeds, per_seed_results):
    """results.md / results.json / figures / report/ of a multi-seed run (avjax.evaluation.seeds)."""
    from avjax.evaluation import seeds as seed_stats
    from avjax.viz.curves import plot_sweep
    spec = robustness.EvalSpec.from_config(config.eval)
    first = per_seed_results[0]
    baseline = config.baseline if config.baseline in first else next(iter(first))
    methods = list(next(iter(first.values()))["methods"])
    agg = dict(replicates=config.aggregate.bootstrap, confidence=config.aggregate.confidence,
               seed=config.aggregate.seed)
    summary = seed_stats.aggregate(per_seed_results, methods, **agg) if methods else {}
    modalities = {}
    for name, res in first.items():
        if res.get("defense", "none") == "none" and res.get("architecture", "classifier") == "classifier":
            modalities.setdefault(res["modality"], name)
    found = seed_stats.findings(per_seed_results, modalities, methods, **agg)
    found += seed_stats.defense_findings(per_seed_results, baseline, methods, control_gain=config.eval.control_gain,
                                         clean_tolerance=config.eval.clean_tolerance, **agg)
    labels = {n: report.label(n, r) for n, r in first.items()}
    sweeps = seed_stats.mean_sweeps(per_seed_results)
    if summary:
        text = seed_stats.markdown(summary, found, labels, seeds=seeds, confidence=config.aggregate.confidence,
                                   header=report.header(first, spec, baseline), baseline=baseline, sweeps=sweeps,
                                   title=f"avjax robustness: {config.data.name}")
    else:
        text = f"# avjax robustness: {config.data.name}\n\nNo attack methods were evaluated.\n"
    located = localization.over_seeds(per_seed_results)
    if located:
        text += "\n".join(localization.seeds_markdown(located, labels, seeds)) + "\n"
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump({"seeds": seeds, "summary": {m: {k: {c: i.as_dict() for c, i in cells.items()}
                                                   for k, cells in ms.items()} for m, ms in summary.items()},
                   "findings": [f.as_dict() for f in found], "sweeps": sweeps, "localization": located,
                   "per_seed": {s: f"seed_{s}/results.json" for s in seeds},
                   "config": json.loads(config.to_json())}, f, indent=1)
    av = [n for n, r in first.items() if r["modality"] == "av" and n in sweeps]
    if av:
        os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
        plot_sweep(os.path.join(workdir, "figures", f"accuracy_vs_eps_{spec.sweep_method}.png"), sweeps, av[0],
                   f"{config.data.name}: {spec.sweep_method.upper()} accuracy vs eps, mean ± std over "
                   f"{len(seeds)} seeds")
    if config.report.examples:
        seed0 = seed_config(config, seeds[0])
        seed0_dir = os.path.join(workdir, f"seed_{seeds[0]}")
        sources, transforms = data_sources.build(config.data)
        figures = sorted(glob.glob(os.path.join(workdir, "figures", "*.png")))
        figures += sorted(f for f in glob.glob(os.path.join(seed0_dir, "figures", "*.png"))  # heat maps, t-SNE
                          if os.path.basename(f) not in {os.path.basename(g) for g in figures})
        write_html_report(config, workdir, first, models_to_evaluate(seed0, seed0_dir), sources, transforms, spec,
                          baseline, gallery_note=f" (the run of seed {seeds[0]})", figures=figures)
    log.info("results over %d seeds: %s", len(seeds), os.path.join(workdir, "results.md"))
