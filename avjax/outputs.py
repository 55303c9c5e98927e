"""What an evaluation writes: results.md / results.json, figures and the HTML report, for one run and over seeds.

`write_run_outputs` writes a single run's (after `avjax.experiment.evaluate`), `write_seed_results` those of a
run over seeds (after `avjax.experiment.run_seeds`); both draw the accuracy-vs-eps curves with `plot_sweeps`
and build the report with `write_html_report`.
"""
import glob
import json
import logging
import os

import numpy as np

from avjax import model_dir
from avjax.attacks import ModelFns
from avjax.config_files import class_names
from avjax.data import sources as data_sources
from avjax.evaluation import certified, localization, report, robustness
from avjax.evaluation.robustness import attack_spec_for
from avjax.runs import defense_of, models_to_evaluate, seed_config

log = logging.getLogger(__name__)


def plot_sweeps(config, workdir, sweeps, spec, title_note=""):
    """figures/accuracy_vs_eps_<method>.png of the first audio-visual model with a sweep (none: no figure)."""
    from avjax.viz.curves import plot_sweep
    av = [n for n, s in sweeps.items() if s.get("modality") == "av"]
    if not av:
        return
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    plot_sweep(os.path.join(workdir, "figures", f"accuracy_vs_eps_{spec.sweep_method}.png"), sweeps, av[0],
               f"{config.data.name}: {spec.sweep_method.upper()} accuracy vs eps{title_note}")


def write_run_outputs(config, workdir, results, models, sources, transforms, spec, baseline, standard=None):
    """results.md / results.json, the figures (accuracy vs eps, embeddings, localization heat maps) and the HTML
    report of one evaluated run."""
    report.write(workdir, results, spec, config, baseline, f"avjax robustness: {config.data.name}", standard=standard)
    plot_sweeps(config, workdir, {n: r["sweep"] for n, r in results.items() if "sweep" in r}, spec)
    plot_all_embeddings(config, workdir, results, baseline, class_names(config))
    plot_certified(config, workdir,
                   {report.label(n, r): r["certified"] for n, r in results.items() if "certified" in r})
    for name in results:
        if results[name].get("architecture") == "localization" and config.localization.figure_examples:
            plot_localization(config, workdir, name, models[name], sources, transforms, spec)
    if config.report.examples:
        write_html_report(config, workdir, results, models, sources, transforms, spec, baseline)


def plot_certified(config, workdir, curves, title_note=""):
    """figures/certified_accuracy.png: certified accuracy vs radius, `curves[label] = {mode: {'radii', 'accuracy'}}`
    (none: no figure)."""
    from avjax.viz.curves import plot_certified as plot
    if not curves:
        return
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    plot(os.path.join(workdir, "figures", "certified_accuracy.png"), curves, certified.UNITS,
         f"{config.data.name}: accuracy vs L2 radius, certified (smoothed classifiers) and attacked{title_note}")


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


def _first(tree, n):
    """The first n examples of every per-example array of a gallery (the batch is padded)."""
    if isinstance(tree, dict):
        return {k: _first(v, n) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(_first(v, n) for v in tree)
    return tree[:n] if isinstance(tree, np.ndarray) and tree.ndim >= 1 else tree


def write_seed_results(config, workdir, seeds, per_seed_results):
    """results.md / results.json / figures / report/ of a multi-seed run (avjax.evaluation.seeds)."""
    from avjax.evaluation import seeds as seed_stats
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
    sweep_found = seed_stats.defense_sweep_findings(per_seed_results, baseline, **agg)
    if summary:
        text = seed_stats.markdown(summary, found, labels, seeds=seeds, confidence=config.aggregate.confidence,
                                   header=report.header(first, spec, baseline), baseline=baseline, sweeps=sweeps,
                                   title=f"avjax robustness: {config.data.name}", sweep_found=sweep_found)
    else:
        text = f"# avjax robustness: {config.data.name}\n\nNo attack methods were evaluated.\n"
    located = localization.over_seeds(per_seed_results)
    if located:
        text += "\n".join(localization.seeds_markdown(located, labels, seeds)) + "\n"
    certificates = certified.over_seeds(per_seed_results)
    if certificates:
        text = text.rstrip("\n") + "\n" + "\n".join(certified.seeds_markdown(certificates, labels, seeds)) + "\n"
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump({"seeds": seeds, "summary": {m: {k: {c: i.as_dict() for c, i in cells.items()}
                                                   for k, cells in ms.items()} for m, ms in summary.items()},
                   "findings": [f.as_dict() for f in found], "sweeps": sweeps,
                   "sweep_findings": [dict(f.as_dict(), eps=e) for e, f in sweep_found], "localization": located,
                   "certified": certificates,
                   "per_seed": {s: f"seed_{s}/results.json" for s in seeds},
                   "config": json.loads(config.to_json())}, f, indent=1)
    plot_sweeps(config, workdir, sweeps, spec, f", mean ± std over {len(seeds)} seeds")
    plot_certified(config, workdir, {labels.get(n, n): {m: {"radii": c[m]["radii"],
                                                          **{k: np.mean(c[m][k], 0).tolist()
                                                             for k in ("accuracy", "attacked", "crmt_bound") if k in c[m]}}
                                                      for m in certified.MODES if m in c}
                                     for n, c in certificates.items()}, f", mean over {len(seeds)} seeds")
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
