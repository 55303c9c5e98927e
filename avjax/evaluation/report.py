"""results.json (one record per model / attack / eps / setting) and results.md (the paper's tables)."""
import hashlib
import json
import platform

import numpy as np

import avjax

from avjax.evaluation.robustness import SETTINGS, robustness_improvement


def config_hash(config) -> str:
    return hashlib.sha256(config.to_json(sort_keys=True).encode()).hexdigest()[:12]


def versions() -> dict:
    import flax
    import jax
    import numpy
    import optax
    return {"avjax": avjax.__version__, "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "numpy": numpy.__version__, "python": platform.python_version()}


def records(results: dict, spec, config) -> list[dict]:
    """Flatten {model: evaluation} into one record per (model, attack, eps_v, eps_a, setting)."""
    common = {"seed": config.seed, "config_hash": config_hash(config), "versions": versions(),
              "units": spec.units, "attack_variant": spec.variant, "attack_loss": spec.loss}
    out = []
    for model, res in results.items():
        base = {"model": model, "label": res.get("label") or model, "modality": res.get("modality"),
                "fusion": fusion_of(res),
                "defense": res.get("defense", "none"), "n": res["n"], **common,
                "attack_loss": res.get("attack_loss", spec.loss)}
        out.append({**base, "attack": "none", "eps_visual": 0.0, "eps_audio": 0.0, "setting": "clean",
                    "accuracy": res["clean"]})
        for method, summary in res["methods"].items():
            steps = 1 if method == "fgsm" else spec.steps
            for setting, (eps_v, eps_a) in zip(SETTINGS, spec.settings()):
                out.append({**base, "attack": method, "steps": steps, "eps_visual": eps_v,
                            "eps_audio": eps_a, "setting": setting, "clean_accuracy": summary["clean"],
                            "accuracy": summary[setting]})
        if "sweep" in res:
            sw = res["sweep"]
            for i, eps in enumerate(sw["eps"]):
                for setting, (on_v, on_a) in zip(SETTINGS, ((0, 1), (1, 0), (1, 1))):
                    out.append({**base, "attack": sw["method"], "sweep": True, "eps_visual": eps * on_v,
                                "eps_audio": eps * on_a, "setting": setting, "accuracy": sw[setting][i]})
    return out


def label(name, res) -> str:
    """A model's row label: the run's `label` (e.g. the appendix's 'MinSim+ExFMem') or its name."""
    return res.get("label") or name


def markdown(results: dict, spec, baseline: str, title: str) -> str:
    lines = [f"# {title}", "", header(results, spec, baseline), ""]
    lines += clean_and_method_tables(results, spec, baseline)
    lines += positive_control(results, spec, baseline)
    lines += fusion_table(results, spec)
    sweeps = {n: r["sweep"] for n, r in results.items() if "sweep" in r}
    lines += sweep_table(sweeps, {n: label(n, r) for n, r in results.items()},
                         lambda sw, setting: [f"{a:.1f}" for a in sw[setting]])
    return "\n".join(lines) + "\n"


def sweep_table(sweeps: dict, labels: dict, cells, note: str = "") -> list[str]:
    """The accuracy-vs-eps section: one row per model and setting, `cells(sweep, setting)` per eps."""
    if not sweeps:
        return []
    first = next(iter(sweeps.values()))
    lines = ["", f"## Accuracy vs eps ({first['method'].upper()}{note})", "",
             "| model | setting | " + " | ".join(f"ε = {e:g}" for e in first["eps"]) + " |",
             "|---|---|" + "---|" * len(first["eps"])]
    names = {"xA": "✗A", "xV": "✗V", "xAV": "✗AV"}
    for name, sw in sweeps.items():
        for setting in SETTINGS:
            lines.append(f"| {labels.get(name, name)} | {names[setting]} | " + " | ".join(cells(sw, setting)) + " |")
    return lines


def header(results: dict, spec, baseline: str) -> str:
    """The line under a results.md title: protocol, units, attack variant and loss, eps per setting."""
    losses = sorted({res.get("attack_loss", spec.loss) for res in results.values()})
    loss_note = (f"loss `{spec.loss}`" if losses == [spec.loss] else
                 "loss per model: " + ", ".join(f"{label(n, r)} `{r.get('attack_loss', spec.loss)}`"
                                                for n, r in results.items()))
    study = {"paper": "the released attack study at the paper's tables' eps (`protocol=paper`)",
             "attack_script": "the released attack script (`protocol=attack_script`)"}.get(
                 getattr(spec, "study", "corrected"), "avjax's corrected attacks (default)")
    return (f"Protocol: {study}. Units: `{spec.units}`; attack variant `{spec.variant}`, {loss_note}; "
            f"xA eps_audio={spec.eps_audio_only}, xV eps_visual={spec.eps_visual_only}, "
            f"xAV eps={spec.eps_joint} on each; PGD/MIM {spec.steps} steps of eps/8. "
            f"RI is relative to `{baseline}`. Accuracies in %.")


def clean_and_method_tables(results: dict, spec, baseline: str) -> list[str]:
    lines = ["## Clean accuracy (test)", "", "| model | modality | clean | n |", "|---|---|---|---|"]
    for name, res in results.items():
        lines.append(f"| {label(name, res)} | {res.get('modality')} | {res['clean']:.2f} | {res['n']} |")
    for method in spec.methods:
        lines += ["", f"## {method.upper()}", "",
                  "| model | ✓AV | ✗A | ✗V | ✗AV | Avg | RI | joint-only share of ✗AV successes |",
                  "|---|---|---|---|---|---|---|---|"]
        base = results.get(baseline, {}).get("methods", {}).get(method)
        for name, res in results.items():
            s = res["methods"][method]
            ri = robustness_improvement(s, base) if base else float("nan")
            share = f"{s['joint_only_share']:.1f} % of {s['joint_successes']}" if s["joint_successes"] else "-"
            lines.append(f"| {label(name, res)} | {s['clean']:.2f} | {s['xA']:.2f} | {s['xV']:.2f} | {s['xAV']:.2f} "
                         f"| {s['avg']:.2f} | {ri:.2f} | {share} |")
    return lines


AT_SETTINGS = {"at_a": "xA", "at_v": "xV", "at_av": "xAV"}


def required_gain(gain, base_clean, base_attacked):
    """The points an AT row must gain over the baseline in its setting: `gain`, or half of what the attack takes
    from the baseline where that is less (at an eps that barely hurts the baseline no row can gain 10 points).
    Scalars or arrays (one per seed)."""
    return np.minimum(gain, np.maximum(np.subtract(base_clean, base_attacked), 0.0) / 2)


def positive_control(results: dict, spec, baseline: str) -> list[str]:
    """The adversarially trained rows (beyond the paper) against the baseline, in the setting each was trained
    for: a defense known to work, so an evaluation that finds no gain there is itself in doubt. A row holds when
    under every attack it gains at least `required_gain` points (`spec.control_gain`, or half the baseline's loss
    where smaller) at a clean cost of at most `spec.control_clean_cost` points."""
    base = results.get(baseline)
    rows = {n: r for n, r in results.items() if r.get("defense") in AT_SETTINGS}
    if base is None or not rows or not spec.methods:
        return []
    gain, cost = spec.control_gain, spec.control_clean_cost
    lines = ["", "## Positive control: adversarial training (beyond the paper)", "",
             f"PGD adversarial training (Madry et al. 2018) against one setting's threat, compared with "
             f"{label(baseline, base)} in that setting. Holds (✓) when under every attack the row gains >= {gain:g} "
             f"points (or half of what the attack takes from {label(baseline, base)}, where that is less: the "
             f"required gain in brackets) and loses <= {cost:g} points of clean accuracy; where it does not, either "
             "the training or the evaluation is too weak to show a robustness known to exist.", "",
             "| model | setting | clean (Δ) | " + " | ".join(f"{m.upper()} (Δ) [required]" for m in spec.methods)
             + " | holds |", "|---|---|---|" + "---|" * len(spec.methods) + "---|"]
    for name, res in rows.items():
        setting = AT_SETTINGS[res["defense"]]
        d_clean = res["clean"] - base["clean"]
        deltas = [res["methods"][m][setting] - base["methods"][m][setting] for m in spec.methods]
        needed = [required_gain(gain, base["methods"][m]["clean"], base["methods"][m][setting])
                  for m in spec.methods]
        ok = all(d >= r for d, r in zip(deltas, needed)) and d_clean >= -cost
        cells = [f"{res['methods'][m][setting]:.2f} ({d:+.2f}) [{r:.2f}]"
                 for m, d, r in zip(spec.methods, deltas, needed)]
        lines.append(f"| {label(name, res)} | ✗{setting[1:]} | {res['clean']:.2f} ({d_clean:+.2f}) | "
                     + " | ".join(cells) + f" | {'✓' if ok else '✗'} |")
    return lines


def fusion_of(res):
    """The fusion of an AV model's evaluation (None for unimodal models)."""
    if res.get("modality") != "av":
        return None
    return (res.get("model_config") or {}).get("fusion", "concat")


def fusion_table(results: dict, spec) -> list[str]:
    """The paper's fusion table (one row per AV fusion, every method and setting), when the results
    hold AV models with more than one fusion (`fusion=all`)."""
    av = {n: r for n, r in results.items() if fusion_of(r)}
    if len({fusion_of(r) for r in av.values()}) < 2 or not spec.methods:
        return []
    head = ["clean"] + [f"{m.upper()} {s}" for m in spec.methods for s in ("✗A", "✗V", "✗AV")]
    lines = ["", "## Fusions", "", "| fusion | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for name, res in av.items():
        cells = [f"{res['clean']:.2f}"] + [f"{res['methods'][m][s]:.2f}" for m in spec.methods for s in SETTINGS]
        lines.append(f"| {label(name, res)} | " + " | ".join(cells) + " |")
    return lines


def defense_findings(results: dict, spec, baseline: str, config) -> str:
    """The defense table's findings in a one-seed results.md (margins of this seed; intervals over the test
    examples): see avjax.evaluation.seeds.defense_findings. '' without defended rows."""
    from avjax.evaluation import seeds   # seeds builds on this module's tables
    methods = [m for m in spec.methods if all(m in r.get("methods", {}) for r in results.values())]
    agg = config.get("aggregate")
    if agg is None or not methods or any("per_example" not in r["methods"][m] for r in results.values()
                                         for m in methods):
        return ""
    found = seeds.defense_findings([results], baseline, methods, replicates=agg.bootstrap, confidence=agg.confidence,
                                   seed=agg.seed, control_gain=spec.control_gain,
                                   clean_tolerance=config.eval.clean_tolerance)
    return "\n".join(seeds.findings_markdown(found, agg.confidence)) + ("\n" if found else "")


def write(workdir, results, spec, config, baseline, title, standard=None):
    """results.json and results.md; with the standard protocol (`standard`, a ProtocolSpec) its
    section in results.md and leaderboard.json."""
    import os

    from avjax.evaluation import protocol
    from avjax.evaluation import certified, embeddings, localization, memory_diagnostics
    recs = records(results, spec, config)
    located = {name: res["localization"] for name, res in results.items() if "localization" in res}
    diagnosed = {name: res["memory_diagnostics"] for name, res in results.items() if "memory_diagnostics" in res}
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump({"records": recs, "localization": located, "memory_diagnostics": diagnosed,
                   "embeddings": {n: r["embeddings"]["metrics"] for n, r in results.items() if "embeddings" in r},
                   "certified": {n: r["certified"] for n, r in results.items() if "certified" in r},
                   "config": json.loads(config.to_json())}, f, indent=1)
    text = markdown(results, spec, baseline, title)
    text += defense_findings(results, spec, baseline, config)
    for name, res in located.items():
        text += "\n".join(localization.markdown(res, label(name, results[name]))) + "\n"
    for name, res in diagnosed.items():
        text += "\n".join(memory_diagnostics.markdown(res, label(name, results[name]))) + "\n"
    certificates = certified.markdown(results, lambda name: label(name, results[name]))
    if certificates:
        text += "\n".join(certificates) + "\n"
    embedded = embeddings.markdown(results, lambda name: label(name, results[name]))
    if embedded:
        text += "\n".join(embedded) + "\n"
    if standard is not None:
        text += protocol.markdown(results, standard)
        entries = [protocol.leaderboard_entry(name, res["standard"] | {k: res.get(k) for k in
                                                                       ("label", "modality", "defense")},
                                              standard, data=config.data.name, versions=versions(),
                                              model_config=res.get("model_config"))
                   for name, res in results.items()]
        with open(os.path.join(workdir, "leaderboard.json"), "w") as f:
            json.dump({"protocol": "standard", "config_hash": config_hash(config), "entries": entries}, f, indent=1)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(text)
    return recs
