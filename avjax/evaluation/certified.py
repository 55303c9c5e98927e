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

Beside each curve, the base model's empirical accuracy under L2 PGD (`avjax.attacks.l2_attack`) in the same ball
(the mode's modality, the same radius and units; joint: the whitened ball): an upper bound on the base model's
robust accuracy where the certificate is a lower bound on the smoothed classifier's.

For a model trained by CRMT (its variables hold the `crmt` Lipschitz estimate), its own bound (avjax.defenses.crmt)
on the same examples, radii and balls (the base model itself, no noise), and its violations: examples the bound
calls robust at a radius that L2 PGD breaks there. A true certificate has none.
"""
import jax
import numpy as np
from scipy import stats

from avjax import certify
from avjax.attacks.core import as_model_fns
from avjax.attacks.l2_attack import pgd_l2
from avjax.defenses import crmt
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


def attack_scales(mode: str, sigma_visual: float, sigma_audio: float) -> tuple[float, float]:
    """(scale_visual, scale_audio) of the L2 ball a mode's radius (in the mode's own units) is about."""
    return {"audio": (0.0, 1.0), "visual": (1.0, 0.0), "joint": (sigma_visual, sigma_audio)}[mode]


def evaluate(fns, source, transform, *, sigma_visual, sigma_audio, modes, n0, n, alpha, draws_per_call, seed,
             radii, examples, batch_size, mesh, workers, name, attack_steps=0, attack_step_fraction=0.25) -> dict:
    """{'sigma_visual', 'sigma_audio', 'n0', 'n', 'alpha', 'n_examples', 'attack_steps', mode: {'radii' (mode
    units), 'accuracy' (%), 'attacked' (% under L2 PGD of `attack_steps` steps, base model; with attack_steps > 0),
    'per_example': {'correct', 'radius' (mode units), 'abstain'}}} over the first `examples` test examples; for a
    CRMT model also 'crmt_bound' (% right with CRMT's bound >= r), 'crmt_violations' (examples inside the bound that
    L2 PGD breaks, per radius), 'crmt_own_bound' ({'examples' right with a positive bound, 'broken' by L2 PGD just
    inside their own bound, 'median_radius'}) and per_example 'crmt_radius'."""
    out = {"sigma_visual": float(sigma_visual), "sigma_audio": float(sigma_audio), "n0": int(n0), "n": int(n),
           "alpha": float(alpha), "attack_steps": int(attack_steps)}
    key = jax.random.key(seed)
    for m, mode in enumerate(modes):
        s_v, s_a = mode_sigmas(mode, sigma_visual, sigma_audio)
        scale = radius_scale(mode, sigma_visual, sigma_audio)
        grid = [float(r * scale) for r in radii]
        correct, radius, abstain, robust, bounded, broken = [], [], [], [], [], []
        weights = attack_scales(mode, sigma_visual, sigma_audio)
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
            if attack_steps:
                robust.append(_robust(fns, batch, label, grid, weights, attack_steps, attack_step_fraction)[:, keep])
            if has_crmt_bound(fns):
                r_crmt = crmt_radius(fns, batch, label, weights)
                bounded.append(r_crmt[keep])
                if attack_steps:   # each example attacked at its own bound: inside it, nothing may break it
                    _, _, fooled = pgd_l2(fns, batch["image"], batch["audio"], batch["label"],
                                          radius=(np.maximum(r_crmt, 0.0) * OWN_BOUND_SHRINK).astype(np.float32),
                                          scale_visual=weights[0],
                                          scale_audio=weights[1], steps=attack_steps,
                                          step_fraction=attack_step_fraction)
                    broken.append(np.asarray(gather(fooled))[keep])
        out[mode] = {"radii": grid, "accuracy": curve(correct, radius, abstain, grid),
                     "per_example": {"correct": correct, "radius": radius, "abstain": abstain}}
        if attack_steps:
            robust = np.concatenate(robust, 1)
            out[mode]["attacked"] = [float(x) for x in robust.mean(1) * 100]
        if bounded:
            bounded = np.concatenate(bounded)
            claimed = np.stack([bounded >= r for r in grid])   # right and bounded at >= r (wrong: r < 0)
            out[mode]["crmt_bound"] = [float(x) for x in claimed.mean(1) * 100]
            out[mode]["per_example"]["crmt_radius"] = bounded.tolist()
            if attack_steps:
                out[mode]["crmt_violations"] = [int(x) for x in (claimed & ~robust).sum(1)]
                inside = bounded > 0
                out[mode]["crmt_own_bound"] = {"examples": int(inside.sum()),
                                               "broken": int((np.concatenate(broken) & inside).sum()),
                                               "median_radius": float(np.median(bounded[inside])) if inside.any()
                                               else 0.0}
        out["n_examples"] = len(correct)
    return out


OWN_BOUND_SHRINK = 0.999   # the bound covers norms below r: each example is attacked just inside its own


def has_crmt_bound(fns) -> bool:
    """Whether the model is a CRMT model after its second step (its variables hold the Lipschitz estimate)."""
    return "crmt" in getattr(fns, "variables", {})


@jax.jit
def _crmt_terms(fns, image, audio):
    logits, out = fns(image, audio)
    return logits, out["fused"]


def crmt_radius(fns, batch, label, weights):
    """(B,) CRMT's bound against the runner-up class, in the ball of `weights` (s_visual, s_audio); negative where
    the model is wrong."""
    logits, fused = (np.asarray(gather(x)) for x in _crmt_terms(as_model_fns(fns), batch["image"], batch["audio"]))
    classes = logits.shape[-1]
    head = fns.variables["params"]["classifier"]
    r = crmt.bound((fused[:, :classes], fused[:, classes:]), (head["scale_visual"], head["scale_audio"]),
                   head["bias"], fns.variables["crmt"]["lipschitz"], label, crmt.runner_up(logits, label), weights)
    return np.asarray(r, np.float64)


@jax.jit
def _predict(fns, image, audio):
    return jax.numpy.argmax(fns(image, audio)[0], -1)


def _robust(fns, batch, label, grid, scales, steps, step_fraction):
    """(radii, B) bool: whether the base model still classifies each example right under L2 PGD at each radius."""
    s_v, s_a = scales
    rows = []
    for r in grid:
        if r == 0:   # no perturbation: the clean prediction
            rows.append(np.asarray(gather(_predict(as_model_fns(fns), batch["image"], batch["audio"]))) == label)
            continue
        _, _, fooled = pgd_l2(fns, batch["image"], batch["audio"], batch["label"],
                              radius=np.full(batch["label"].shape, r, np.float32),   # one program with the
                              scale_visual=s_v, scale_audio=s_a, steps=steps,        # per-example radii below
                              step_fraction=step_fraction)
        rows.append(~np.asarray(gather(fooled)))
    return np.stack(rows)


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
             "above; these certificates bound it from below, for L2 changes." + _attack_note(certified)]
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
            if "attacked" in row:
                lines.append(f"| {label(name)}: {ATTACKED} | " + " | ".join(f"{a:.2f}" for a in row["attacked"])
                             + " | – |")
            if "crmt_bound" in row:
                lines.append(f"| {label(name)}: {BOUND} | " + " | ".join(f"{a:.2f}" for a in row["crmt_bound"])
                             + " | – |")
        lines += _violation_lines(certified, label, mode, radii)
    return lines


ATTACKED = "L2 PGD on the base model"
BOUND = "CRMT's bound"


def _violation_lines(certified, label, mode, radii, per_seed=False):
    """What L2 PGD says about each CRMT bound of a mode: examples inside the bound that the attack breaks."""
    lines = []
    for name, res in certified.items():
        counts = res[mode].get("crmt_violations")
        if counts is None:
            continue
        if per_seed:
            counts = np.sum(counts, 0)
        cells = ", ".join(f"{c} at r = {r:.3g}" for c, r in zip(counts, radii) if r > 0)
        where = f"summed over the seeds, {res['n_examples']} examples each" if per_seed else \
            f"of {res['n_examples']}"
        own = res[mode].get("crmt_own_bound")
        if per_seed and own is not None:
            own = {"examples": sum(o["examples"] for o in own), "broken": sum(o["broken"] for o in own),
                   "median_radius": float(np.median([o["median_radius"] for o in own]))}
        broken = sum(counts) + (own["broken"] if own else 0)
        verdict = ("no attack found a counterexample" if not broken else
                   "so the bound is not a certificate (its Lipschitz constants are a maximum over training examples)")
        text = f"{label(name)}, {BOUND} against L2 PGD ({where}): examples inside the bound at the radius that PGD breaks: {cells}"
        if own:
            text += (f"; each example attacked just inside its own bound (median {own['median_radius']:.3g}): "
                     f"{own['broken']} of {own['examples']} broken")
        lines += ["", f"{text}; {verdict}."]
    return lines


def _attack_note(models: dict) -> str:
    """The sentences that say what the attack rows and the CRMT rows of the tables are (where there are any)."""
    first = next(iter(models.values()))
    note = ""
    if first.get("attack_steps"):
        note += (f" Rows '{ATTACKED}': the base model's accuracy (%) under L2 PGD ({first['attack_steps']} steps) in "
                 "the same ball, an upper bound on the base model's robust accuracy at that radius (a different "
                 "classifier than the smoothed one the certificate is about).")
    if any("crmt_bound" in res.get(mode, {}) for res in models.values() for mode in MODES):
        note += (f" Rows '{BOUND}': the share (%) of examples the CRMT base model gets right with CRMT's own bound at "
                 "least r, the bound's claim about the base model.")
    return note


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
        out[name]["attack_steps"] = base.get("attack_steps", 0)
        for mode in (m for m in MODES if m in base):
            out[name][mode] = {"radii": base[mode]["radii"],
                               "accuracy": [res[name]["certified"][mode]["accuracy"] for res in per_seed_results]}
            for key in ("attacked", "crmt_bound", "crmt_violations", "crmt_own_bound"):
                if all(key in res[name]["certified"][mode] for res in per_seed_results):
                    out[name][mode][key] = [res[name]["certified"][mode][key] for res in per_seed_results]
    return out


def seeds_markdown(over: dict, labels: dict, seeds) -> list[str]:
    """The certified-accuracy tables of a multi-seed run: mean ± std over the seeds at each radius."""
    if not over:
        return []
    first = next(iter(over.values()))
    lines = [*_heading(first),
             f"Mean ± std over {len(seeds)} seeds ({', '.join(map(str, seeds))}) of the certified accuracy (%) at each "
             "L2 radius. Each seed's table, with the share abstained, is in its own results.md." + _attack_note(over)]
    for mode in (m for m in MODES if m in first):
        radii = first[mode]["radii"]
        lines += ["", f"**{mode}** ({UNITS[mode]})", "",
                  "| model | " + " | ".join(f"r = {r:.3g}" for r in radii) + " |", "|---|" + "---|" * len(radii)]
        for name, res in over.items():
            for key, suffix in (("accuracy", ""), ("attacked", f": {ATTACKED}"), ("crmt_bound", f": {BOUND}")):
                if key not in res[mode]:
                    continue
                acc = np.asarray(res[mode][key], np.float64)
                std = acc.std(0, ddof=1) if len(acc) > 1 else np.zeros(acc.shape[1])
                lines.append(f"| {labels.get(name, name)}{suffix} | "
                             + " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in zip(acc.mean(0), std)) + " |")
        lines += _violation_lines(over, lambda n: labels.get(n, n), mode, radii, per_seed=True)
    return lines
