"""Results over several training seeds: mean ± std, bootstrap intervals, and whether the paper's findings hold.

`config.seeds = N` trains and evaluates every run N times (seeds `config.seed + k`, each in
`workdir/seed_<seed>/`); this module turns the N evaluations into one results.md / results.json:

* every accuracy as mean ± std over the seeds and a percentile bootstrap interval that resamples the
  seeds and the test examples (the same example draw for every seed: the test set is shared), so it
  covers both the training randomness and the finite test set;
* the paper's findings checked seed by seed, with the smallest margin and a paired bootstrap interval of
  the mean difference: clean AV > V > A, and the AV model with its audio attacked below the clean
  visual-only model ("integration can hurt": the attack on the weaker modality undoes the gain).
"""
import dataclasses

import numpy as np

from avjax.evaluation import report
from avjax.evaluation.robustness import SETTINGS

CELLS = ("clean",) + SETTINGS


@dataclasses.dataclass(frozen=True)
class Interval:
    """mean ± std over seeds (percent) and the bootstrap interval [lo, hi]."""

    mean: float
    std: float
    lo: float
    hi: float
    per_seed: tuple

    def text(self) -> str:
        return f"{self.mean:.2f} ± {self.std:.2f} [{self.lo:.1f}, {self.hi:.1f}]"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self) | {"per_seed": list(self.per_seed)}


def bootstrap_indices(num_seeds: int, num_examples: int, *, replicates: int, seed: int):
    """(seed draws (R, S), example draws (R, n)): one shared draw for every quantity, so differences
    between quantities are paired bootstraps."""
    rng = np.random.default_rng(seed)
    return rng.integers(num_seeds, size=(replicates, num_seeds)), rng.integers(num_examples, size=(replicates, num_examples))


def interval(correct, draws, confidence: float) -> Interval:
    """`correct` (S, n) per seed and example (bool or a paired difference in {-1, 0, 1}) -> Interval in %."""
    correct = np.asarray(correct, np.float64)
    per_seed = correct.mean(1) * 100
    seed_draw, example_draw = draws
    values = correct[seed_draw[:, :, None], example_draw[:, None, :]].mean((1, 2)) * 100
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    std = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0
    return Interval(float(per_seed.mean()), std, float(lo), float(hi), tuple(float(x) for x in per_seed))


def per_example(per_seed_results: list[dict], model: str, method: str, cell: str) -> np.ndarray:
    """(S, n) correctness of one model / method / cell across the seeds' evaluations."""
    rows = [np.asarray(r[model]["methods"][method]["per_example"][cell], bool) for r in per_seed_results]
    if len({len(r) for r in rows}) != 1:
        raise ValueError(f"{model}: the seeds were evaluated on different numbers of examples "
                         f"({[len(r) for r in rows]}); evaluate them with the same data and eval.max_examples")
    return np.stack(rows)


def aggregate(per_seed_results: list[dict], methods, *, replicates: int, confidence: float, seed: int) -> dict:
    """{model: {method: {cell: Interval}}} over the seeds (models and methods as evaluated)."""
    first = per_seed_results[0]
    models = [m for m in first if all(m in r for r in per_seed_results)]
    n = len(first[models[0]]["methods"][methods[0]]["per_example"]["clean"])
    draws = bootstrap_indices(len(per_seed_results), n, replicates=replicates, seed=seed)
    out = {}
    for model in models:
        out[model] = {}
        for method in methods:
            cells = {c: per_example(per_seed_results, model, method, c) for c in CELLS}
            out[model][method] = {c: interval(v, draws, confidence) for c, v in cells.items()}
            out[model][method]["avg"] = interval(np.mean([cells[s] for s in SETTINGS], 0), draws, confidence)
    return out


@dataclasses.dataclass(frozen=True)
class Finding:
    """A claim `a > b` checked seed by seed: margins (points) and the interval of the mean difference."""

    claim: str
    margins: tuple
    difference: Interval

    @property
    def holds(self) -> bool:
        return all(m > 0 for m in self.margins)

    def text(self) -> str:
        verdict = "holds in every seed" if self.holds else (
            "does NOT hold in seed(s) " + ", ".join(str(i) for i, m in enumerate(self.margins) if m <= 0))
        return (f"{self.claim}: {verdict}; smallest margin {min(self.margins):+.2f} points (per seed "
                + ", ".join(f"{m:+.2f}" for m in self.margins)
                + f"); mean difference {self.difference.mean:+.2f} [{self.difference.lo:+.1f}, "
                  f"{self.difference.hi:+.1f}]")

    def as_dict(self) -> dict:
        return {"claim": self.claim, "holds": self.holds, "margins": list(self.margins),
                "difference": self.difference.as_dict()}


def findings(per_seed_results: list[dict], modalities: dict, methods, *, replicates: int, confidence: float,
             seed: int) -> list[Finding]:
    """The paper's findings for the undefended av / audio / visual models (`modalities`: {modality: model
    name}); [] when one of the three is missing."""
    if not all(k in modalities for k in ("av", "audio", "visual")) or not methods:
        return []
    av, audio, visual = modalities["av"], modalities["audio"], modalities["visual"]
    first = methods[0]
    clean = {m: per_example(per_seed_results, m, first, "clean") for m in (av, audio, visual)}
    draws = bootstrap_indices(len(per_seed_results), clean[av].shape[1], replicates=replicates, seed=seed)

    def finding(claim, high, low):
        diff = high.astype(np.int8) - low.astype(np.int8)
        margins = tuple(float(x) for x in diff.mean(1) * 100)
        return Finding(claim, margins, interval(diff, draws, confidence))

    out = [finding(f"clean AV ({av}) > clean V ({visual})", clean[av], clean[visual]),
           finding(f"clean V ({visual}) > clean A ({audio})", clean[visual], clean[audio])]
    for method in methods:
        attacked = per_example(per_seed_results, av, method, "xA")
        out.append(finding(f"{method.upper()}: AV with its audio attacked (✗A) < clean visual-only model",
                           clean[visual], attacked))
    return out


# The paper's defense claims (appendix Tables 2/3), by the `defense` of the evaluated rows.
DEFENSE_CLAIMS = (("minsim+exfmem", None), ("exfmem", None), ("minsim", "maxsim"))


def defense_findings(per_seed_results: list[dict], baseline: str, methods, *, replicates: int, confidence: float,
                     seed: int, clean_tolerance: float = 2.0, control_gain: float = 10.0) -> list[Finding]:
    """The defense table's findings, seed by seed with paired intervals: per method, MinSim+ExFMem and ExFMem
    have RI > 0 (better than the undefended `baseline`), MinSim's RI > MaxSim's; each defended row keeps its clean
    accuracy within `clean_tolerance` points of the baseline; each adversarially trained row (the positive control)
    beats the baseline in its own setting by >= `control_gain` points, or by half of what the attack takes from the
    baseline where that is less (report.required_gain). RI per example is (clean_d - clean_b) +
    mean over the settings of (x_d - x_b), so its mean is the table's RI. [] without defended rows."""
    first = per_seed_results[0]
    rows = {r.get("defense", "none"): n for n, r in first.items() if n != baseline and r.get("modality") == "av"}
    if baseline not in first or not methods or not set(rows) - {"none"}:
        return []
    labels = {d: report.label(n, first[n]) for d, n in rows.items()}
    base_label = report.label(baseline, first[baseline])
    cells = {}

    def get(name, method, cell):
        if (name, method, cell) not in cells:
            cells[name, method, cell] = per_example(per_seed_results, name, method, cell).astype(np.float64)
        return cells[name, method, cell]

    def ri(name, method):
        return (get(name, method, "clean") - get(baseline, method, "clean")) + np.mean(
            [get(name, method, s) - get(baseline, method, s) for s in SETTINGS], 0)

    n = get(baseline, methods[0], "clean").shape[1]
    draws = bootstrap_indices(len(per_seed_results), n, replicates=replicates, seed=seed)

    def finding(claim, values):
        return Finding(claim, tuple(float(x) for x in values.mean(1) * 100), interval(values, draws, confidence))

    out = []
    for method in methods:
        for defense, other in DEFENSE_CLAIMS:
            if defense not in rows or (other is not None and other not in rows):
                continue
            if other is None:
                out.append(finding(f"{method.upper()}: {labels[defense]} RI > 0 (more robust than {base_label})",
                                   ri(rows[defense], method)))
            else:
                out.append(finding(f"{method.upper()}: {labels[defense]} RI > {labels[other]} RI",
                                   ri(rows[defense], method) - ri(rows[other], method)))
        for defense, setting in report.AT_SETTINGS.items():
            if defense in rows:   # the gain required in each seed (as a fraction), from that seed's baseline
                needed = report.required_gain(control_gain / 100, get(baseline, method, "clean").mean(1, keepdims=True),
                                              get(baseline, method, setting).mean(1, keepdims=True))
                out.append(finding(f"{method.upper()}: {labels[defense]} beats {base_label} on ✗{setting[1:]} by "
                                   f">= {control_gain:g} points or half of what the attack takes from "
                                   f"{base_label} (positive control)",
                                   get(rows[defense], method, setting) - get(baseline, method, setting) - needed))
    for defense, name in rows.items():
        if defense != "none":
            out.append(finding(f"{labels[defense]} keeps clean accuracy within {clean_tolerance:g} points of "
                               f"{base_label}", get(name, methods[0], "clean") - get(baseline, methods[0], "clean")
                               + clean_tolerance / 100))
    return out


def defense_sweep_findings(per_seed_results: list[dict], baseline: str, *, replicates: int, confidence: float,
                           seed: int) -> list[tuple[float, Finding]]:
    """The defense table's RI claims (DEFENSE_CLAIMS) at every nonzero eps of the sweep, seed by seed with paired
    intervals, as `defense_findings` does at the table's eps: RI per example at eps is (clean_d - clean_b) + mean
    over the settings of (x_d(eps) - x_b(eps)) on the sweep's examples (the clean cells are the sweep's eps-0
    row, or the first examples of the table's clean cell). -> [(eps, Finding)]; [] without defended rows or
    per-example sweeps (evaluations stored before they were kept)."""
    first = per_seed_results[0]
    rows = {r.get("defense", "none"): n for n, r in first.items() if n != baseline and r.get("modality") == "av"}
    names = [baseline] + list(rows.values())
    if baseline not in first or not set(rows) - {"none"} or not all(
            "per_example" in r.get(n, {}).get("sweep", {}) for r in per_seed_results for n in names):
        return []
    eps = list(first[baseline]["sweep"]["eps"])
    method = first[baseline]["sweep"]["method"]

    def sweep_cells(name):
        """{cell: (S, E, n)}: the sweep's correctness per seed, with the clean cell at every eps."""
        cells = {s: np.stack([np.asarray(r[name]["sweep"]["per_example"][s], bool) for r in per_seed_results])
                 for s in SETTINGS}
        n = cells["xA"].shape[2]
        if 0.0 in eps:
            clean = cells["xA"][:, eps.index(0.0)]
        else:
            clean = np.stack([np.asarray(next(iter(r[name]["methods"].values()))["per_example"]["clean"][:n], bool)
                              for r in per_seed_results])
        cells["clean"] = np.repeat(clean[:, None], len(eps), axis=1)
        return {k: v.astype(np.float64) for k, v in cells.items()}

    cells = {n: sweep_cells(n) for n in names}
    if len({c["xA"].shape for c in cells.values()}) != 1:
        raise ValueError("the models' sweeps cover different eps values or examples; evaluate them with the same "
                         "eval.sweep_eps and eval.sweep_max_examples")

    def ri(name):
        d, b = cells[name], cells[baseline]
        return (d["clean"] - b["clean"]) + np.mean([d[s] - b[s] for s in SETTINGS], 0)   # (S, E, n)

    labels = {d: report.label(n, first[n]) for d, n in rows.items()}
    base_label = report.label(baseline, first[baseline])
    draws = bootstrap_indices(len(per_seed_results), cells[baseline]["xA"].shape[2], replicates=replicates,
                              seed=seed)
    out = []
    for defense, other in DEFENSE_CLAIMS:
        if defense not in rows or (other is not None and other not in rows):
            continue
        if other is None:
            claim, values = f"{method.upper()}: {labels[defense]} RI > 0 (more robust than {base_label})", ri(rows[defense])
        else:
            claim = f"{method.upper()}: {labels[defense]} RI > {labels[other]} RI"
            values = ri(rows[defense]) - ri(rows[other])
        for e, at in enumerate(eps):
            if at != 0:
                out.append((at, Finding(claim, tuple(float(x) for x in values[:, e].mean(1) * 100),
                                        interval(values[:, e], draws, confidence))))
    return out


def sweep_findings_markdown(found: list[tuple[float, Finding]], confidence: float) -> list[str]:
    """'## Defense findings along the eps sweep': one row per claim, one column per eps."""
    if not found:
        return []
    eps = sorted({e for e, _ in found})
    claims = list(dict.fromkeys(f.claim for _, f in found))
    by = {(f.claim, e): f for e, f in found}

    def cell(f):
        held = sum(m > 0 for m in f.margins)
        return (f"{'✓' if f.holds else '✗'} {f.difference.mean:+.2f} [{f.difference.lo:+.1f}, "
                f"{f.difference.hi:+.1f}] ({held}/{len(f.margins)})")

    return ["", "## Defense findings along the eps sweep", "",
            f"Each claim at every eps of the sweep: the mean margin over the seeds in accuracy points "
            f"[{confidence * 100:g} % paired bootstrap interval over seeds and examples] (seeds where it holds); "
            "✓ where it holds in every seed.", "",
            "| claim | " + " | ".join(f"ε = {e:g}" for e in eps) + " |", "|---|" + "---|" * len(eps)] + [
        f"| {claim} | " + " | ".join(cell(by[claim, e]) if (claim, e) in by else "" for e in eps) + " |"
        for claim in claims]


def markdown(summary: dict, found: list[Finding], labels: dict, *, seeds, confidence: float, header: str,
             title: str, baseline: str, sweeps: dict, sweep_found=()) -> str:
    """results.md of a multi-seed run: the paper's tables with mean ± std [interval] cells."""
    pct = f"{confidence * 100:g} %"
    lines = [f"# {title}", "", header, "",
             f"**{len(seeds)} seeds** ({', '.join(str(s) for s in seeds)}; one run each in "
             + ", ".join(f"`seed_{s}/`" for s in seeds) + "). "
             f"Cells: mean ± std over the seeds [{pct} bootstrap interval over seeds and test examples].", ""]
    first_method = next(iter(next(iter(summary.values()))))
    lines += ["## Clean accuracy (test)", "", "| model | clean |", "|---|---|"]
    for name, methods in summary.items():
        lines.append(f"| {labels.get(name, name)} | {methods[first_method]['clean'].text()} |")
    for method in next(iter(summary.values())):
        base = summary.get(baseline, {}).get(method)
        lines += ["", f"## {method.upper()}", "", "| model | ✓AV | ✗A | ✗V | ✗AV | Avg | RI |",
                  "|---|---|---|---|---|---|---|"]
        for name, methods in summary.items():
            s = methods[method]
            ri = ((s["clean"].mean - base["clean"].mean) + (s["avg"].mean - base["avg"].mean)) if base else float("nan")
            lines.append(f"| {labels.get(name, name)} | " + " | ".join(s[c].text() for c in CELLS + ("avg",))
                         + f" | {ri:.2f} |")
    lines += findings_markdown(found, confidence)
    lines += report.sweep_table(sweeps, labels, lambda sw, setting: [
        f"{m:.1f} ± {s:.1f}" for m, s in zip(sw[setting], sw[setting + "_std"])], note=", mean ± std over seeds")
    lines += sweep_findings_markdown(list(sweep_found), confidence)
    lines += ["", "Each seed's own results.md (with every other section of a single run) is in "
              + ", ".join(f"`seed_{s}/results.md`" for s in seeds) + "."]
    return "\n".join(lines) + "\n"


def findings_markdown(found: list[Finding], confidence: float) -> list[str]:
    """The '## Findings' section: each claim with ✓ / ✗, its margin per seed and its paired interval."""
    if not found:
        return []
    return ["", "## Findings", "",
            f"Each claim checked in every seed (margin in accuracy points; the mean difference with its "
            f"{confidence * 100:g} % paired bootstrap interval):", ""] + [
        f"- {'✓' if f.holds else '✗'} {f.text()}" for f in found]


def mean_sweeps(per_seed_results: list[dict]) -> dict:
    """{model: sweep} with the mean over seeds per eps and setting (and `<setting>_std`)."""
    out = {}
    for name in per_seed_results[0]:
        sweeps = [r[name].get("sweep") for r in per_seed_results if name in r]
        if not sweeps or any(s is None for s in sweeps):
            continue
        merged = {k: v for k, v in sweeps[0].items() if k not in SETTINGS and k != "per_example"}
        for setting in SETTINGS:
            values = np.asarray([s[setting] for s in sweeps], np.float64)
            merged[setting] = values.mean(0).tolist()
            merged[setting + "_std"] = (values.std(0, ddof=1) if len(sweeps) > 1 else 0 * values[0]).tolist()
        out[name] = merged
    return out
