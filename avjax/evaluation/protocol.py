"""The standard robustness protocol: an attack ensemble per setting, worst case per example, a checklist.

Per setting of the threat model (xA, xV, xAV at the config's eps, in its units) every example is attacked by
  * APGD-CE and APGD-T (targeted DLR over the runner-up classes; APGD-DLR when a model has < 4 classes),
  * FAB-L-inf (the minimal perturbation, avjax.attacks.fab_attack; `fab`): FAB-T by default (`fab_targeted`:
    towards each of the `target_classes` runner-up classes, one gradient a step), else untargeted FAB,
  * Square (score-based: no gradients, so gradient masking cannot stop it),
  * for a model with an external memory, APGD-CE through each adaptive surrogate of the coder
    (`adaptive`: 'unrolled', 'bpda_identity', 'bpda_ridge'; the forward pass stays the exact defense),
    and the feature-collision attack (avjax.attacks.feature_collision: the encoder's features pulled onto
    the nearest memory atom pair of another class),
and counts as robust only if it survives all of them (its worst case). Beside every evaluation the
gradient-masking checklist (Carlini et al. 2019) is run and each failing check is flagged:
  * `more_steps`: APGD-CE with twice the steps and one more restart does not raise the success,
  * `large_eps`: where the setting attacks every input the model reads, at `large_eps_factor` times the eps the
    accuracy goes (almost) to 0; where it leaves one standing (xA, xV on an AV model), APGD-CE with the attacked
    input unbounded (its whole range) is at least as strong as the black-box `swap`: the attacked input replaced
    by that of each of `swap_candidates` batch-mates of another class (worst case per example), which an
    unbounded attacker can always reach, so the other modality's evidence is accounted for,
  * `black_box`: the white-box attacks succeed at least as often as Square,
  * `transfer`: ... and at least as often as APGD-CE adversarials made on the undefended baseline model,
  * `zero_gradient`: no example has an all-zero input gradient in an attacked modality the model reads (the
    gradient of its logit margin at the clean point; AutoAttack's `check_zero_gradients`): a white-box attack
    sees nothing to follow there (e.g. an input read through `stop_gradient` or a quantisation).
The checklist's attacks are in the same ball (except `large_eps`), so they count towards the worst case too.
"""
import dataclasses
import logging
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from avjax import attacks, parallel
from avjax.configs.base import build_spec
from avjax.evaluation.progress import NoProgress
from avjax.evaluation.common import DISAGREE, NON_FINITE, SETTINGS, correctness, eval_batches, gather, rescored
from avjax.evaluation.robustness import SETTING_MODALITIES

log = logging.getLogger(__name__)
CHECKS = ("more_steps", "large_eps", "black_box", "transfer", "rescore", "zero_gradient")
WHITE_BOX = ("apgd-ce", "apgd-t", "fab", "fab-t")
OUT_OF_BALL = ("large_eps", "swap")   # the checklist's attacks outside the threat model: not in the worst case
HEADERS = {"xA": "✗A", "xV": "✗V", "xAV": "✗AV"}


@dataclasses.dataclass(frozen=True)
class ProtocolSpec:
    """The standard protocol's settings, from `config.eval` and `config.eval.standard`."""

    units: str
    mean: tuple
    std: tuple
    eps_audio_only: float
    eps_visual_only: float
    eps_joint: float | tuple  # one eps for both modalities, or (eps_visual, eps_audio)
    apgd_steps: int
    apgd_restarts: int
    target_classes: int
    square_queries: int
    square_p_init: float
    adaptive: tuple
    unroll: int
    checklist: bool
    large_eps_factor: float
    max_large_eps_accuracy: float
    tolerance: float
    seed: int
    settings_run: tuple       # which of xA, xV, xAV the protocol attacks
    swap_candidates: int = 8  # batch-mates whose attacked input replaces an example's in the `swap` check
    fab: bool = True          # FAB-L-inf (apgd_steps steps) in the ensemble
    fab_targeted: bool = True  # as FAB-T over target_classes targets (AutoAttack's), else untargeted

    def __post_init__(self):
        unknown = set(self.settings_run) - set(SETTINGS)
        if unknown or not self.settings_run:
            raise ValueError(f"eval.standard.settings_run {self.settings_run}: choose from {SETTINGS}")

    @classmethod
    def from_config(cls, eval_cfg):
        return build_spec(cls, eval_cfg, eval_cfg.standard)

    def setting_indices(self):
        return tuple(i for i, name in enumerate(SETTINGS) if name in self.settings_run)

    def settings(self):
        """(eps_visual, eps_audio) of xA, xV, xAV; `eps_joint` is one eps for both or a (visual, audio) pair."""
        joint = tuple(self.eps_joint) if isinstance(self.eps_joint, (tuple, list)) else (self.eps_joint,) * 2
        return ((0.0, self.eps_audio_only), (self.eps_visual_only, 0.0), joint)

    def attack_list(self, has_memory: bool, has_transfer: bool) -> list[str]:
        fab = ["fab-t" if self.fab_targeted else "fab"] if self.fab else []
        names = ["apgd-ce", "apgd-t"] + fab + ["square"]
        if has_memory:
            names += [f"apgd-ce/{g}" for g in self.adaptive] + ["feature-collision"]
        if self.checklist:
            names += ["apgd-ce/more_steps", "large_eps", "swap"] + (["transfer"] if has_transfer else [])
        return names

    def parameters(self, name: str) -> dict:
        """What a leaderboard entry records of attack `name`."""
        apgd = dict(steps=self.apgd_steps, restarts=self.apgd_restarts, rho=0.75, momentum=0.75)
        if name == "apgd-ce":
            return dict(apgd, loss="ce")
        if name == "apgd-t":
            return dict(apgd, loss="dlr-targeted", target_classes=self.target_classes)
        if name == "square":
            return dict(queries=self.square_queries, p_init=self.square_p_init, loss="margin")
        if name in ("fab", "fab-t"):
            targets = dict(target_classes=self.target_classes) if name == "fab-t" else {}
            return dict(steps=self.apgd_steps, restarts=self.apgd_restarts, eta=1.05, beta=0.9, alpha_max=0.1,
                        targeted=name == "fab-t", **targets, norm="Linf (each modality in units of its eps)")
        if name == "apgd-ce/more_steps":
            return dict(apgd, loss="ce", steps=2 * self.apgd_steps, restarts=self.apgd_restarts + 1)
        if name == "large_eps":
            return dict(apgd, loss="ce", eps_factor=self.large_eps_factor,
                        partial_settings="the attacked input unbounded (its whole range)")
        if name == "swap":
            return dict(candidates=self.swap_candidates, replacement="the attacked input of a batch-mate of another "
                        "class (black-box, unbounded)")
        if name == "transfer":
            return dict(apgd, loss="ce", source="the baseline (undefended) model", point="highest_loss")
        if name.startswith("apgd-ce/"):
            return dict(apgd, loss="ce", memory_gradient=name.split("/", 1)[1])
        if name == "feature-collision":
            return dict(steps=self.apgd_steps, step_fraction=1.0 / 8.0, loss="-||f - target||^2 before the memory",
                        target="the nearest memory atom pair of another class (atoms labelled by the model's head)")
        raise ValueError(f"unknown protocol attack {name!r}")


def _with_memory_gradient(fns, gradient):
    module = fns.module
    return attacks.ModelFns(module.clone(memory=dataclasses.replace(module.memory, gradient=gradient)),
                            fns.variables)


def program_of(name: str, spec: ProtocolSpec, setting: int, covers_all: bool = True):
    """-> (kind, eps scale): the compiled attack program behind protocol attack `name` (the
    large-eps check reuses APGD-CE's program with its eps scaled, eps being an argument: by `large_eps_factor`
    where the setting attacks every input the model reads (`covers_all`), else to the attacked input's whole
    range)."""
    if name == "large_eps":
        if covers_all:
            return "apgd-ce", spec.large_eps_factor
        eps_v, eps_a = spec.settings()[setting]
        whole = max(1.0 / s for s in spec.std) if spec.units == "normalized" else 1.0  # [0, 1] in attack units
        return "apgd-ce", (whole / eps_v if eps_v else 2.0 / eps_a)   # one modality attacked: one factor
    return name, 1.0


def covers_all_inputs(fns, setting: int) -> bool:
    """Whether setting `setting` attacks every input `fns` reads."""
    on_v, on_a = SETTING_MODALITIES[SETTINGS[setting]]
    return (on_v or not getattr(fns, "uses_visual", True)) and (on_a or not getattr(fns, "uses_audio", True))


def swap_correct(fns, batch, *, setting: int, candidates: int):
    """(B,) int8 correctness when the attacked input(s) of each example are replaced by those of its batch-mates
    k = 1..`candidates` places on (of another class; same-class partners are skipped), worst case per example: a
    black-box, unbounded attack that an unbounded white-box attack can always match."""
    image, audio, label = batch["image"], batch["audio"], batch["label"]
    on_v, on_a = SETTING_MODALITIES[SETTINGS[setting]]
    correct = correctness(fns, image, audio, label)

    def fooled_by(k):
        other = jnp.roll(label, k)
        img = jnp.roll(image, k, axis=0) if on_v else image
        aud = jnp.roll(audio, k, axis=0) if on_a else audio
        return (other != label) & (correctness(fns, img, aud, label) == 0)

    ks = jnp.arange(1, max(min(candidates, label.shape[0] - 1), 0) + 1)
    fooled = jax.lax.map(fooled_by, ks).any(0) if ks.size else jnp.zeros(label.shape, bool)
    return jnp.where(correct == NON_FINITE, correct, jnp.where(fooled, 0, correct)).astype(jnp.int8)


def attack_once(fns, batch, eps_visual, eps_audio, key, transfer_fns=None, *, spec: ProtocolSpec, kind: str,
                setting: int):
    """Correctness (B,) int8 of `fns` on `batch` under attack program `kind` (see `program_of`) in
    setting `setting` at (eps_visual, eps_audio) (traced: one program serves every eps)."""
    image, audio, label = batch["image"], batch["audio"], batch["label"]
    on_v, on_a = SETTING_MODALITIES[SETTINGS[setting]]
    flags = dict(eps_visual=float(on_v), eps_audio=float(on_a))        # which modalities (static)
    common = dict(units=spec.units, mean=spec.mean, std=spec.std)
    if kind in ("fab", "fab-t"):
        cfg = attacks.fab_config(steps=spec.apgd_steps, restarts=spec.apgd_restarts, unroll=spec.unroll,
                                 targeted=kind == "fab-t", target_classes=spec.target_classes, **flags, **common)
        adv_v, adv_a, radius = attacks.fab_search(fns, image, audio, label, eps_visual, eps_audio, cfg, key)
        return rescored(fns, adv_v, adv_a, label, radius <= 1.0)
    if kind == "feature-collision":
        cfg = attacks.collision_config(steps=spec.apgd_steps, unroll=spec.unroll, **flags, **common)
        adv = attacks.run_feature_collision(fns, image, audio, label, eps_visual, eps_audio, cfg)
        return correctness(fns, *adv, label)
    if kind == "swap":
        return swap_correct(fns, batch, setting=setting, candidates=spec.swap_candidates)
    if kind == "square":
        cfg = attacks.square_config(queries=spec.square_queries, p_init=spec.square_p_init, **flags, **common)
        adv, _, reported = attacks.square_search(fns, image, audio, label, eps_visual, eps_audio, cfg, key)
        return rescored(fns, *adv, label, reported)
    apgd = dict(common, steps=spec.apgd_steps, restarts=spec.apgd_restarts, unroll=spec.unroll)
    attacked = fns
    if kind == "apgd-t":
        classes = fns(image, audio)[0].shape[-1]
        if classes >= 3:   # DLR is undefined below 3 classes (CE stands in); targeted from 4 classes
            apgd.update(loss="dlr", targeted=classes >= 4, target_classes=spec.target_classes)
    elif kind == "apgd-ce/more_steps":
        apgd.update(steps=2 * spec.apgd_steps, restarts=spec.apgd_restarts + 1)
    elif kind.startswith("apgd-ce/"):
        attacked = _with_memory_gradient(fns, kind.split("/", 1)[1])
    elif kind == "transfer":  # the baseline's highest-loss point, not its first (thin-margin) success
        attacked = transfer_fns
        apgd.update(point="highest_loss")
    elif kind != "apgd-ce":
        raise ValueError(f"unknown protocol attack {kind!r}")
    cfg = attacks.apgd_config(**flags, **apgd)
    adv_v, adv_a, reported = attacks.apgd_search(attacked, image, audio, label, eps_visual, eps_audio, cfg, key)
    if kind == "transfer":  # successes on the baseline say nothing about this model
        reported = jnp.zeros_like(reported)
    return rescored(fns, adv_v, adv_a, label, reported)


def attack_key(root, batch_index: int, setting: int, name: str):
    """The PRNG key of attack `name` on one batch in one setting: its own random starts, not shared with the
    other attacks (a check that reran APGD-CE's starts would test less than it says)."""
    salt = zlib.crc32(name.encode()) & 0x7FFFFFFF
    return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, batch_index), setting), salt)


def zero_gradient(fns, batch, *, setting: int):
    """(B,) int8: 1 where the gradient of the logit margin (true class minus the best other) w.r.t. an attacked
    modality the model reads is all zero at the clean point. The margin, not the CE: a confident model's CE
    gradient can underflow to exactly 0 in float32 where its margin's cannot."""
    image, audio, label = batch["image"], batch["audio"], batch["label"]
    on_v, on_a = SETTING_MODALITIES[SETTINGS[setting]]
    on_v, on_a = on_v and getattr(fns, "uses_visual", True), on_a and getattr(fns, "uses_audio", True)

    def margin(img, aud):
        logits = fns(img, aud)[0]
        true = jnp.take_along_axis(logits, label[:, None], -1)[:, 0]
        other = jnp.max(jnp.where(jax.nn.one_hot(label, logits.shape[-1], dtype=bool), -jnp.inf, logits), -1)
        return jnp.sum(true - other)

    g_v, g_a = jax.grad(margin, argnums=(0, 1))(image, audio)
    flat_zero = lambda g: jnp.all(g.reshape(g.shape[0], -1) == 0, -1)  # noqa: E731
    zero = jnp.zeros(label.shape, bool)
    if on_v:
        zero = zero | flat_zero(g_v)
    if on_a:
        zero = zero | flat_zero(g_a)
    return zero.astype(jnp.int8)


def evaluate_standard(fns, source, transform, spec: ProtocolSpec, *, batch_size, mesh=None, max_examples=0,
                      workers=0, name="model", transfer_fns=None, progress=None):
    """-> {'n', 'clean', 'settings': {setting: {attack: acc, 'worst': acc}}, 'checklist': [...],
    'per_example': ...}: the standard protocol on `fns` over a test source. `progress` (a
    `ModelProgress`) keeps each (batch, setting, attack) result as it completes, for a restart."""
    mesh = mesh or parallel.make_mesh()
    batches = ((index, batch, mask) for index, batch, mask, _ in eval_batches(
        source, transform, batch_size=batch_size, mesh=mesh, workers=workers, max_examples=max_examples,
        desc=f"standard protocol {name}"))
    return attack_batches(fns, batches, spec, mesh=mesh, root=jax.random.key(spec.seed), name=name,
                          transfer_fns=transfer_fns, progress=progress)


def attack_batches(fns, batches, spec: ProtocolSpec, *, mesh, root, name="model", transfer_fns=None, progress=None):
    """The protocol over `batches`, an iterable of (index, global batch, mask (B,) bool): every attack of
    `spec.attack_list` and the checklist's per setting, each (batch, setting, attack) with its own key from
    `root`; -> `summarize`'s dict. The source-driven and the array-level entry points both run it."""
    progress = progress or NoProgress()
    fns = jax.device_put(attacks.core.as_model_fns(fns), parallel.replicated(mesh))
    if transfer_fns is not None:
        transfer_fns = jax.device_put(attacks.core.as_model_fns(transfer_fns), parallel.replicated(mesh))
    has_memory = getattr(getattr(fns, "module", None), "memory", None) is not None
    names = spec.attack_list(has_memory, transfer_fns is not None)
    run = jax.jit(attack_once, static_argnames=("spec", "kind", "setting"))
    clean_fn = jax.jit(correctness)
    zero_fn = jax.jit(zero_gradient, static_argnames=("setting",))
    per = {"clean": [], **{(s, a): [] for s in spec.setting_indices() for a in names}}
    if spec.checklist:
        per.update({(s, "zero_gradient"): [] for s in spec.setting_indices()})
    masks = []

    def stored_or(part, index, compute):
        arrays = progress.get(part, index)
        if arrays is None:
            arrays = {"correct": gather(compute())}
            progress.put(part, index, arrays)
        return arrays["correct"]

    for index, batch, mask in batches:
        masks.append(mask)
        per["clean"].append(stored_or("clean", index,
                                      lambda: clean_fn(fns, batch["image"], batch["audio"], batch["label"])))
        timings = {}
        for s in spec.setting_indices():
            if spec.checklist:
                per[(s, "zero_gradient")].append(stored_or(f"{SETTINGS[s]}/zero_gradient", index,
                                                           lambda: zero_fn(fns, batch, setting=s)))
            for a in names:
                t0 = time.perf_counter()
                key = attack_key(root, index, s, a)
                kind, factor = program_of(a, spec, s, covers_all_inputs(fns, s))
                eps_v, eps_a = (np.float32(e * factor) for e in spec.settings()[s])
                per[(s, a)].append(stored_or(
                    f"{SETTINGS[s]}/{a}", index,
                    lambda: run(fns, batch, eps_v, eps_a, key, transfer_fns if kind == "transfer" else None,
                                spec=spec, kind=kind, setting=s)))
                timings[f"{SETTINGS[s]}/{a}"] = time.perf_counter() - t0
        log.info("standard protocol %s: batch %d, %s", name, index + 1,
                 ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    if not masks:
        raise ValueError(f"{name}: no examples to evaluate")
    mask = np.concatenate(masks)
    correct = {k: np.concatenate(v)[mask] for k, v in per.items()}
    if any(np.any(v == NON_FINITE) for v in correct.values()):
        raise FloatingPointError(f"{name}: non-finite logits under the standard protocol; no table is written")
    uses = [m for m, on in (("visual", getattr(fns, "uses_visual", True)), ("audio", getattr(fns, "uses_audio", True)))
            if on]
    return summarize(correct, names, spec, uses)


def summarize(correct: dict, names, spec: ProtocolSpec, uses=("visual", "audio")) -> dict:
    """Accuracies (%) per setting and attack, the worst case, and the checklist, from per-example
    correctness; `uses`: the modalities the model reads (which settings attack all of its inputs)."""
    clean = correct["clean"].astype(bool)
    acc = lambda v: float(np.mean(v) * 100) if v.size else float("nan")  # noqa: E731
    in_ball = [a for a in names if a not in OUT_OF_BALL]
    white = [a for a in names if a in WHITE_BOX or a == "feature-collision"
             or (a.startswith("apgd-ce/") and a != "apgd-ce/more_steps")]
    white = ["apgd-ce"] + [a for a in white if a != "apgd-ce"]
    out = {"n": int(clean.size), "clean": acc(clean), "attacks": list(names), "settings": {}, "checklist": [],
           "per_example": {"clean": clean.tolist()}}
    for s, setting in enumerate(SETTINGS):
        if (s, names[0]) not in correct:   # a setting left out (tests)
            continue
        c = {a: clean & correct[(s, a)].astype(bool) for a in names}
        worst = np.logical_and.reduce([c[a] for a in in_ball])
        white_box = np.logical_and.reduce([c[a] for a in white])
        row = {a: acc(c[a]) for a in names}
        row.update(worst=acc(worst), white_box=acc(white_box))
        # examples an attack reported fooled that the full model classifies right (re-scored, counted as right)
        row["rescore"] = {a: int(np.sum(correct[(s, a)] == DISAGREE)) for a in names}
        if (s, "zero_gradient") in correct:  # % of examples (clean or not) with an all-zero input gradient
            row["zero_gradient"] = acc(correct[(s, "zero_gradient")].astype(bool))
        out["settings"][setting] = row
        out["per_example"][setting] = worst.tolist()
        if spec.checklist:
            attacked = {"xA": {"audio"}, "xV": {"visual"}, "xAV": {"visual", "audio"}}[setting]
            out["checklist"] += _checks(setting, row, spec, "transfer" in names, attacked >= set(uses),
                                        examples=int(clean.size))
    out["avg_worst"] = float(np.mean([row["worst"] for row in out["settings"].values()]))
    return out


def _checks(setting, row, spec, has_transfer, covers_all, examples=0) -> list[dict]:
    """The checks of one setting; `large_eps` at `large_eps_factor` only where the attack reaches every input the
    model uses (an audio attack on an AV model may rightly leave the visual evidence standing). A comparison
    misses by more than `tolerance` points and more than one of the `examples` before it fails: on 48 examples
    one example is 2.1 points, and one more success for APGD with twice the steps is no sign of masking."""
    tol = max(spec.tolerance, 100.0 / examples if examples else 0.0)
    checks = [
        ("more_steps", row["apgd-ce/more_steps"] >= row["apgd-ce"] - tol,
         f"APGD-CE {row['apgd-ce']:.2f} -> {row['apgd-ce/more_steps']:.2f} with 2x steps and +1 restart")]
    if covers_all:
        checks.append(("large_eps", row["large_eps"] <= spec.max_large_eps_accuracy,
                       f"accuracy {row['large_eps']:.2f} at {spec.large_eps_factor:g}x eps "
                       f"(must be <= {spec.max_large_eps_accuracy:g})"))
    elif "swap" in row:
        checks.append(("large_eps", row["large_eps"] <= row["swap"] + tol,
                       f"accuracy {row['large_eps']:.2f} with the attacked input unbounded vs {row['swap']:.2f} with "
                       "it replaced by a batch-mate's of another class"))
    checks += [
        ("black_box", row["white_box"] <= row["square"] + tol,
         f"white-box {row['white_box']:.2f} vs Square {row['square']:.2f}")]
    if has_transfer:
        checks.append(("transfer", row["white_box"] <= row["transfer"] + tol,
                       f"white-box {row['white_box']:.2f} vs transfer from the baseline {row['transfer']:.2f}"))
    else:
        checks.append(("transfer", None, "not run: no baseline (undefended) model to transfer from"))
    if "rescore" in row:
        disagree = {a: n for a, n in row["rescore"].items() if n}
        checks.append(("rescore", not disagree,
                       "every success an attack reported holds when the full model re-scores it" if not disagree else
                       "the full model classifies right some examples an attack reported fooled ("
                       + ", ".join(f"{a}: {n}" for a, n in sorted(disagree.items()))
                       + "): the attack's view of the model is not the model (batch-mates, a surrogate, a tie)"))
    if "zero_gradient" in row:
        checks.append(("zero_gradient", row["zero_gradient"] == 0,
                       f"{row['zero_gradient']:.2f} % of the examples have an all-zero input gradient in the attacked "
                       "modality"))
    return [{"setting": setting, "check": name, "passed": None if ok is None else bool(ok),
             "status": "not run" if ok is None else "passed" if ok else "failed", "detail": detail}
            for name, ok, detail in checks]


def failed_checks(checklist) -> list[dict]:
    """The checks that ran and failed (a check that could not run is neither passed nor failed)."""
    return [c for c in checklist if c["passed"] is False]


def leaderboard_entry(name, res, spec: ProtocolSpec, *, data, versions, model_config) -> dict:
    """One leaderboard.json entry: model, data, threat model with units, clean and robust accuracy per
    setting, the attacks and their parameters, versions, seed, and the checklist."""
    return {
        "model": name, "label": res.get("label") or name, "modality": res.get("modality"),
        "defense": res.get("defense", "none"), "model_config": model_config, "data": data, "n": res["n"],
        "threat_model": {"norm": "Linf", "units": spec.units,
                         "image_bounds": "pixels in [0, 1]", "audio_bounds": "waveform in [-1, 1]",
                         "settings": {s: {"eps_visual": v, "eps_audio": a}
                                      for s, (v, a) in zip(SETTINGS, spec.settings()) if s in spec.settings_run}},
        "clean_accuracy": res["clean"],
        "robust_accuracy": {s: row["worst"] for s, row in res["settings"].items()},
        "robust_accuracy_avg": res["avg_worst"],
        "per_attack": res["settings"],
        "attacks": {a: spec.parameters(a) for a in res["attacks"]},
        "checklist": res["checklist"], "versions": versions, "seed": spec.seed}


def markdown(results: dict, spec: ProtocolSpec) -> str:
    """The results.md section of the standard protocol (worst case, per attack, flagged checks)."""
    lines = ["", "## Standard protocol (APGD-CE, APGD-T, Square, adaptive; worst case per example)", "",
             f"Units `{spec.units}`; xA eps_audio={spec.eps_audio_only}, xV eps_visual={spec.eps_visual_only}, "
             f"xAV eps={spec.eps_joint} on each; APGD {spec.apgd_steps} steps x {spec.apgd_restarts} restart(s), "
             f"APGD-T over {spec.target_classes} target classes, Square {spec.square_queries} queries. "
             "Robust accuracy in %; the entries are in leaderboard.json.", "",
             "| model | ✓AV | " + " | ".join(HEADERS[s] for s in spec.settings_run) + " | Avg | checklist |",
             "|---|---|" + "---|" * len(spec.settings_run) + "---|---|"]
    for name, res in results.items():
        st = res["standard"]
        failed = failed_checks(st["checklist"])
        flag = "⚠ " + ", ".join(sorted({f"{c['check']} ({c['setting']})" for c in failed})) if failed else "passed"
        not_run = sorted({c["check"] for c in st["checklist"] if c["passed"] is None})
        if not_run:
            flag += f" ({', '.join(not_run)} not run)"
        if not spec.checklist:
            flag = "not run"
        lines.append(f"| {res.get('label') or name} | {st['clean']:.2f} | "
                     + " | ".join(f"{st['settings'][s]['worst']:.2f}" for s in spec.settings_run)
                     + f" | {st['avg_worst']:.2f} | {flag} |")
    for name, res in results.items():
        st = res["standard"]
        lines += ["", f"### {res.get('label') or name}: accuracy per attack", "",
                  "| attack | " + " | ".join(HEADERS[s] for s in spec.settings_run) + " |",
                  "|---|" + "---|" * len(spec.settings_run)]
        for a in st["attacks"] + ["white_box", "worst"]:
            lines.append(f"| {a} | " + " | ".join(f"{st['settings'][s][a]:.2f}" for s in spec.settings_run) + " |")
        failed = failed_checks(st["checklist"])
        for c in failed:
            lines.append(f"\n**⚠ gradient-masking check failed: {c['check']} ({c['setting']})**: {c['detail']}")
        if st["checklist"] and not failed:
            lines.append("\nGradient-masking checklist: every check that ran passed.")
        for c in st["checklist"]:
            if c["passed"] is None:
                lines.append(f"\n{c['check']} ({c['setting']}): {c['detail']}.")
    return "\n".join(lines) + "\n"


def print_checklist(name, res):
    """The checklist, logged beside the evaluation of a model (failures as warnings)."""
    for c in res["checklist"]:
        level = logging.WARNING if c["passed"] is False else logging.INFO
        log.log(level, "%s: gradient-masking check %s %s (%s): %s", name, c["check"],
                c["status"].upper() if c["passed"] is False else c["status"], c["setting"], c["detail"])
