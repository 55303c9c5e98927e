"""Certified accuracy over a test split: randomized smoothing (`avjax.certify`) per modality, as curves of the radius.

Three smoothed classifiers of the same base model, each certified on the same test examples:
- 'audio': noise on the waveform only (the frame as given): certifies L2 changes of the waveform samples with the
  frame untouched, radius sigma_audio * R in samples;
- 'visual': noise on the pixels only: certifies L2 changes of the frame (pixels in [0, 1]) with the audio untouched,
  radius sigma_visual * R;
- 'joint': noise on both: certifies every change with sqrt(|d_v|^2 / sigma_visual^2 + |d_a|^2 / sigma_audio^2) < R
  (R itself, in these whitened units).
Certified accuracy at radius r: the share of examples whose smoothed prediction is right, not abstained, and
certified at a radius >= r (Cohen et al. 2019).
"""
import jax
import numpy as np
from scipy import stats

from avjax import certify
from avjax.evaluation.common import eval_batches, gather

MODES = ("audio", "visual", "joint")
UNITS = {"audio": "L2 in waveform samples, frame untouched", "visual": "L2 in pixels, audio untouched",
         "joint": "whitened L2, sqrt(|d_v|^2/σ_v^2 + |d_a|^2/σ_a^2)"}


def mode_sigmas(mode: str, sigma_visual: float, sigma_audio: float) -> tuple[float, float]:
    """(sigma_visual, sigma_audio) of one mode's smoothed classifier."""
    if mode not in MODES:
        raise ValueError(f"unknown certification mode {mode!r}; choose from {MODES}")
    return (0.0 if mode == "audio" else sigma_visual), (0.0 if mode == "visual" else sigma_audio)


def radius_scale(mode: str, sigma_visual: float, sigma_audio: float) -> float:
    """What one unit of the certified (whitened) radius is in the mode's own units."""
    return {"audio": sigma_audio, "visual": sigma_visual, "joint": 1.0}[mode]


def curve(correct, radius, abstain, radii) -> list[float]:
    """Certified accuracy (%) at each radius of `radii` (the certificates' own units)."""
    correct, radius, abstain = (np.asarray(x) for x in (correct, radius, abstain))
    certified = correct.astype(bool) & ~abstain.astype(bool)
    return [float(np.mean(certified & (radius >= r)) * 100) for r in radii]


def evaluate(fns, source, transform, *, sigma_visual, sigma_audio, modes, n0, n, alpha, draws_per_call, seed,
             radii, examples, batch_size, mesh, workers, name) -> dict:
    """{'sigma_visual', 'sigma_audio', 'n0', 'n', 'alpha', 'n_examples', mode: {'radii' (mode units), 'accuracy'
    (%), 'per_example': {'correct', 'radius' (mode units), 'abstain'}}} over the first `examples` test examples."""
    out = {"sigma_visual": float(sigma_visual), "sigma_audio": float(sigma_audio), "n0": int(n0), "n": int(n),
           "alpha": float(alpha)}
    key = jax.random.key(seed)
    for m, mode in enumerate(modes):
        s_v, s_a = mode_sigmas(mode, sigma_visual, sigma_audio)
        scale = radius_scale(mode, sigma_visual, sigma_audio)
        correct, radius, abstain = [], [], []
        for index, batch, mask, _ in eval_batches(source, transform, batch_size=batch_size, mesh=mesh,
                                                  workers=workers, max_examples=examples,
                                                  desc=f"certify {name} ({mode})"):
            pred, r, a = certify.certify(fns, batch["image"], batch["audio"], sigma_visual=s_v, sigma_audio=s_a,
                                         n0=n0, n=n, alpha=alpha, draws_per_call=draws_per_call, mesh=mesh,
                                         key=jax.random.fold_in(jax.random.fold_in(key, m), index))
            keep = np.asarray(mask)
            label = gather(batch["label"])
            correct += (np.asarray(pred) == label)[keep].tolist()
            radius += (np.asarray(r) * scale)[keep].tolist()
            abstain += np.asarray(a)[keep].tolist()
        grid = [float(r * scale) for r in radii]
        out[mode] = {"radii": grid, "accuracy": curve(correct, radius, abstain, grid),
                     "per_example": {"correct": correct, "radius": radius, "abstain": abstain}}
        out["n_examples"] = len(correct)
    return out


def certify_cap(n: int, alpha: float) -> float:
    """The largest radius (in units of sigma) n estimation draws can certify: every draw agreeing gives the lower
    bound alpha^(1/n), and the radius Phi^-1 of it."""
    return float(stats.norm.ppf(alpha ** (1.0 / n)))


def _heading(first: dict) -> list[str]:
    """The section heading and the certificates' settings (of one model's results)."""
    return ["", "## Certified accuracy by randomized smoothing (beyond the paper)", "",
            f"The smoothed classifiers of each model: σ_v = {first['sigma_visual']:g} on pixels, σ_a = "
            f"{first['sigma_audio']:g} on waveform samples, noise on the modality named; n0 = {first['n0']}, "
            f"n = {first['n']}, α = {first['alpha']:g}; {first['n_examples']} test examples. With n draws no radius "
            f"beyond {certify_cap(first['n'], first['alpha']):.2f} σ can be certified.", ""]


def markdown(results: dict, label) -> list[str]:
    """The certified-accuracy section of results.md: one table per mode, a row per certified model."""
    certified = {name: res["certified"] for name, res in results.items() if "certified" in res}
    if not certified:
        return []
    first = next(iter(certified.values()))
    lines = [*_heading(first),
             "Certified accuracy (%) at each L2 radius: a lower bound on the smoothed classifier's accuracy under every "
             "perturbation of that size (with probability >= 1 - α). The L-inf attacks above bound robustness from "
             "above; these certificates bound it from below, for L2 changes."]
    for mode in MODES:
        if mode not in first:
            continue
        radii = first[mode]["radii"]
        lines += ["", f"**{mode}** ({UNITS[mode]})", "",
                  "| model | " + " | ".join(f"r = {r:.3g}" for r in radii) + " | abstained % |",
                  "|---|" + "---|" * (len(radii) + 1)]
        for name, res in certified.items():
            row = res[mode]
            abstained = 100 * float(np.mean(row["per_example"]["abstain"]))
            lines.append(f"| {label(name)} | " + " | ".join(f"{a:.2f}" for a in row["accuracy"])
                         + f" | {abstained:.1f} |")
    return lines


def over_seeds(per_seed_results) -> dict:
    """{model: {mode: {'radii', 'accuracy': [[% per radius] per seed]}}, plus the settings} of the models certified
    in every seed (the same radii and settings in each)."""
    first = per_seed_results[0]
    out = {}
    for name in [n for n, r in first.items() if "certified" in r]:
        if not all("certified" in res.get(name, {}) for res in per_seed_results):
            continue
        base = first[name]["certified"]
        out[name] = {k: base[k] for k in ("sigma_visual", "sigma_audio", "n0", "n", "alpha", "n_examples")}
        for mode in (m for m in MODES if m in base):
            out[name][mode] = {"radii": base[mode]["radii"],
                               "accuracy": [res[name]["certified"][mode]["accuracy"] for res in per_seed_results]}
    return out


def seeds_markdown(over: dict, labels: dict, seeds) -> list[str]:
    """The certified-accuracy tables of a multi-seed run: mean ± std over the seeds at each radius."""
    if not over:
        return []
    first = next(iter(over.values()))
    lines = [*_heading(first),
             f"Mean ± std over {len(seeds)} seeds ({', '.join(map(str, seeds))}) of the certified accuracy (%) at each "
             "L2 radius. Each seed's table, with the share abstained, is in its own results.md."]
    for mode in (m for m in MODES if m in first):
        radii = first[mode]["radii"]
        lines += ["", f"**{mode}** ({UNITS[mode]})", "",
                  "| model | " + " | ".join(f"r = {r:.3g}" for r in radii) + " |", "|---|" + "---|" * len(radii)]
        for name, res in over.items():
            acc = np.asarray(res[mode]["accuracy"], np.float64)
            std = acc.std(0, ddof=1) if len(acc) > 1 else np.zeros(acc.shape[1])
            lines.append(f"| {labels.get(name, name)} | "
                         + " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in zip(acc.mean(0), std)) + " |")
    return lines
