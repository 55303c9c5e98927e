"""Robustness of trained models under audio, visual and joint attacks, per example and in aggregate.

For every model and attack method, jitted programs compute clean predictions and the predictions
under the three settings of the paper: xA (audio attacked, eps_audio_only), xV (frame
attacked, eps_visual_only) and xAV (both, eps_joint each). Per example it records whether each
setting fooled the model, so that every joint success can be attributed: did an audio-only or a
visual-only attack already succeed, or does it take both modalities?
The eps values and the choice between PGD and MIM are arguments of the compiled programs, not constants
in them: both methods, the table and every point of the eps sweep (accuracy-vs-eps curves) run the same
program per model and setting, and every model (and seed) of the same architecture and input shapes
reuses it.
"""
import dataclasses
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np

from avjax import attacks, parallel
from avjax.attacks.core import clean_gradients
from avjax.configs.base import build_spec
from avjax.evaluation.common import NON_FINITE, SETTINGS, correctness, eval_batches, gather, logit_correctness
from avjax.evaluation.progress import NoProgress

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    """Static attack-evaluation settings, filled from `config.eval` (defaults: configs.base)."""

    methods: tuple
    units: str
    variant: str
    loss: str
    cos_weight: float
    steps: int
    step_fraction: float
    momentum: float
    loop: str
    eps_audio_only: float
    eps_visual_only: float
    eps_joint: float
    mean: tuple
    std: tuple
    sweep_eps: tuple
    sweep_method: str
    sweep_max_examples: int
    study: str                 # 'corrected' | 'paper': named in results.md
    control_gain: float        # results.md's positive control: the points an AT row must gain in its setting
    control_clean_cost: float  # ... at a clean cost of at most this many points

    @classmethod
    def from_config(cls, eval_cfg, **overrides):
        return build_spec(cls, eval_cfg, **overrides)

    def settings(self):
        """(eps_visual, eps_audio) of xA, xV, xAV."""
        return ((0.0, self.eps_audio_only), (self.eps_visual_only, 0.0), (self.eps_joint, self.eps_joint))

    def attack_options(self, method):
        opts = dict(units=self.units, loss=self.loss, cos_weight=self.cos_weight, mean=self.mean,
                    std=self.std, variant=self.variant)
        if method != "fgsm":
            opts.update(steps=self.steps, step_fraction=self.step_fraction, momentum=self.momentum,
                        loop=self.loop)
        return opts


def adversarial_inputs(fns, batch, spec: EvalSpec, method: str, settings=SETTINGS) -> list:
    """-> [(adv_image, adv_audio)] of `method` in `settings` (names of SETTINGS; all three, in that order, by
    default)."""
    image, audio, label = batch["image"], batch["audio"], batch["label"]
    opts = spec.attack_options(method)
    eps = dict(zip(SETTINGS, spec.settings()))
    chosen = tuple(eps[s] for s in settings)
    if method == "fgsm":
        return list(attacks.fgsm_settings(fns, image, audio, label, chosen, **opts))
    advs = []
    for eps_v, eps_a in chosen:
        cfg = attacks.make_config(method, eps_visual=eps_v, eps_audio=eps_a, **opts)
        if cfg.attack_visual or cfg.attack_audio:
            advs.append(attacks.run_attack(fns, image, audio, label, eps_v, eps_a, cfg))
        else:
            advs.append((image, audio))
    return advs


SETTING_MODALITIES = {"xA": (False, True), "xV": (True, False), "xAV": (True, True)}  # (visual, audio)


def clean_and_gradients(fns, batch, spec: EvalSpec):
    """-> ((B,) correctness on clean inputs, (d loss/d pixels, d loss/d audio) there). The gradients are
    the first step of FGSM, PGD and MIM in every setting and at every eps of the sweep: computed once
    per batch here, they spare each of those programs one forward/backward pass (~7 % of the table)."""
    cfg = attacks.make_config("fgsm", eps_visual=1.0, eps_audio=1.0, **spec.attack_options("fgsm"))
    gradients, (_, logits) = clean_gradients(fns, batch["image"], batch["audio"], batch["label"], cfg)
    return logit_correctness(logits, batch["label"]), gradients


def fgsm_batch(fns, batch, spec: EvalSpec, settings: tuple, gradients=None):
    """{setting: (B,) correctness} of FGSM in the three settings (static (eps_visual, eps_audio) each,
    so a modality with eps 0 stays bit-identical) from one gradient (`gradients`, when computed already)."""
    image, audio, label = batch["image"], batch["audio"], batch["label"]
    advs = attacks.fgsm_settings(fns, image, audio, label, settings, **spec.attack_options("fgsm"),
                                 gradients=gradients)
    return {name: correctness(fns, v, a, label) for name, (v, a) in zip(SETTINGS, advs)}


def setting_batch(fns, batch, eps_visual, eps_audio, mim, spec: EvalSpec, setting: str, gradients=None):
    """(B,) correctness under PGD (`mim` false) or MIM (`mim` true) in one setting. The eps values and
    the method are traced arguments: PGD and MIM at the table's eps and every eps of the sweep run the
    same compiled program (one per model and setting; compiling PGD and MIM apart took twice as long).
    `gradients` (`clean_and_gradients`) stand in for the first step's forward/backward pass."""
    on_v, on_a = SETTING_MODALITIES[setting]
    cfg = attacks.make_config("mim", eps_visual=float(on_v), eps_audio=float(on_a), **spec.attack_options("mim"))
    image, audio, label = batch["image"], batch["audio"], batch["label"]
    adv_v, adv_a = attacks.run_attack(fns, image, audio, label, eps_visual * on_v, eps_audio * on_a, cfg, mim=mim,
                                      first_gradients=gradients)
    return correctness(fns, adv_v, adv_a, label)


# Module-level jits: every model of a run (and every seed) with the same module and shapes reuses them.
_jit_clean_gradients = jax.jit(clean_and_gradients, static_argnames=("spec",))
_jit_fgsm = jax.jit(fgsm_batch, static_argnames=("spec", "settings"))
_jit_setting = jax.jit(setting_batch, static_argnames=("spec", "setting"))


def iterative_setting(fns, batch, eps_visual, eps_audio, spec: EvalSpec, method: str, setting: str,
                      gradients=None):
    """(B,) correctness under `method` ('pgd' | 'mim') in one setting (the shared program above)."""
    if method not in ("pgd", "mim"):
        raise ValueError(f"not an iterative attack: {method!r}")
    return _jit_setting(fns, batch, jnp.float32(eps_visual), jnp.float32(eps_audio), jnp.bool_(method == "mim"),
                        spec, setting, gradients)


def method_batch(fns, batch, spec: EvalSpec, method: str, clean, gradients=None) -> dict:
    """{'clean', 'xA', 'xV', 'xAV'} correctness of one batch under `method` at the table's eps;
    `gradients`, the batch's clean-point gradients (`clean_and_gradients`), spare one pass per attack."""
    out = {"clean": clean}
    if method == "fgsm":
        return out | _jit_fgsm(fns, batch, spec, spec.settings(), gradients)
    for name, (eps_v, eps_a) in zip(SETTINGS, spec.settings()):
        out[name] = iterative_setting(fns, batch, eps_v, eps_a, spec, method, name, gradients)
    return out


def _table_point(spec: EvalSpec, eps, setting: str) -> bool:
    """Whether the table attacked `setting` at sweep point `eps` (the same eps on each attacked modality)."""
    on_v, on_a = SETTING_MODALITIES[setting]
    eps_v, eps_a = dict(zip(SETTINGS, spec.settings()))[setting]
    return all(np.float32(e) == np.float32(eps) for e, on in ((eps_v, on_v), (eps_a, on_a)) if on)


def sweep_batch(fns, batch, spec: EvalSpec, eps_values, clean, table=None, gradients=None) -> dict:
    """{setting: (E, B) correctness} for eps in `eps_values` (xAV uses eps on both); eps 0 is the clean
    result (an attack with eps 0 leaves the input unchanged). `table`, the batch's results under the
    sweep's method at the table's eps ({setting: (B,)}), stands in for the sweep points it equals: the
    same compiled program on the same inputs and eps would compute them again. `gradients` as in
    `method_batch`."""
    rows = {name: [] for name in SETTINGS}
    for eps in eps_values:
        if eps == 0:
            res = {name: clean for name in SETTINGS}
        elif spec.sweep_method == "fgsm":  # one gradient serves the three settings
            res = _jit_fgsm(fns, batch, spec, tuple((eps * v, eps * a) for v, a in SETTING_MODALITIES.values()),
                            gradients)
        else:
            res = {name: table[name] if table is not None and _table_point(spec, eps, name) else
                   iterative_setting(fns, batch, eps, eps, spec, spec.sweep_method, name, gradients)
                   for name in SETTINGS}
        for name in SETTINGS:
            rows[name].append(res[name])
    return {name: jnp.stack(r) for name, r in rows.items()}


def evaluate_model(fns, source, transform, spec: EvalSpec, *, batch_size, mesh=None,
                   max_examples=0, workers=0, name="model", progress=None):
    """-> {'n', 'clean', method: {setting: accuracy}, 'per_example': ..., 'sweep': ...}.

    `progress` (an `avjax.evaluation.progress.ModelProgress`) keeps each batch's results as it
    completes, and supplies them instead of attacking again when a killed evaluation is restarted."""
    progress = progress or NoProgress()
    mesh = mesh or parallel.make_mesh()
    fns = jax.device_put(fns, parallel.replicated(mesh))
    per = {m: {k: [] for k in ("clean",) + SETTINGS} for m in spec.methods}
    sweep = {k: [] for k in SETTINGS}
    masks, cleans = [], []
    for index, batch, mask, seen in eval_batches(source, transform, batch_size=batch_size, mesh=mesh,
                                                 workers=workers, max_examples=max_examples,
                                                 desc=f"attack {name}"):
        masks.append(mask)
        arrays = progress.get("table", index)
        if arrays is None:
            arrays, timings = {}, {}
            clean, gradients = _jit_clean_gradients(fns, batch, spec)
            arrays["clean:all"] = gather(clean)
            table = {}
            for method in spec.methods:
                t0 = time.perf_counter()
                table[method] = method_batch(fns, batch, spec, method, clean, gradients)
                arrays.update({f"{method}:{k}": gather(v) for k, v in table[method].items()})
                timings[method] = time.perf_counter() - t0
            if spec.sweep_eps and not (spec.sweep_max_examples and seen >= spec.sweep_max_examples):
                t0 = time.perf_counter()
                res = sweep_batch(fns, batch, spec, spec.sweep_eps, clean, table.get(spec.sweep_method), gradients)
                arrays.update({f"sweep:{k}": gather(v) for k, v in res.items()})
                timings["sweep"] = time.perf_counter() - t0
            progress.put("table", index, arrays)
            log.info("attack %s: batch %d, %s", name, index + 1,
                     ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
        for key, value in arrays.items():
            where, k = key.split(":")
            if where == "clean":
                cleans.append(value)
            elif where in per or where == "sweep":
                (sweep if where == "sweep" else per[where])[k].append(value)
    mask = np.concatenate(masks)
    for where, arrays in [(m, per[m]) for m in spec.methods] + [("sweep", sweep)]:
        if any(np.any(np.asarray(a) == NON_FINITE) for v in arrays.values() for a in v):
            raise FloatingPointError(f"{name}: non-finite logits under {where} (e.g. a NaN inside the model or "
                                     "its sparse coder); no table is written from them")
    out = {"n": int(mask.sum()), "methods": {}}
    for method in spec.methods:
        arrays = {k: np.concatenate(v)[mask] for k, v in per[method].items()}
        out["methods"][method] = summarize(arrays)
        out["methods"][method]["per_example"] = {k: v.astype(bool).tolist() for k, v in arrays.items()}
    if spec.sweep_eps:
        sweep_mask = mask[: sum(x.shape[1] for x in sweep["xA"])]
        correct = {k: np.concatenate(v, axis=1)[:, sweep_mask] for k, v in sweep.items()}
        out["sweep"] = {"eps": list(spec.sweep_eps), "method": spec.sweep_method,
                        "n": int(sweep_mask.sum()),
                        **{k: (v.mean(1) * 100).tolist() for k, v in correct.items()},
                        # (E, n) per eps and example: the paired comparisons over seeds along the sweep
                        "per_example": {k: v.astype(bool).tolist() for k, v in correct.items()}}
    if spec.methods:
        out["clean"] = out["methods"][spec.methods[0]]["clean"]
    elif len(cleans) == len(masks):  # no attack: the clean accuracy alone
        out["clean"] = float(np.mean(np.concatenate(cleans)[mask]) * 100)
    return out


def summarize(correct: dict) -> dict:
    """Accuracies (%) and modality attribution of joint successes from per-example correctness."""
    acc = {k: float(np.mean(v) * 100) for k, v in correct.items()}
    acc["avg"] = float(np.mean([acc[s] for s in SETTINGS]))
    clean = correct["clean"].astype(bool)
    fooled = {s: clean & ~correct[s].astype(bool) for s in SETTINGS}
    joint = fooled["xAV"]
    single = fooled["xA"] | fooled["xV"]
    acc["joint_successes"] = int(joint.sum())
    acc["joint_only_share"] = float((joint & ~single).sum() / joint.sum() * 100) if joint.any() else 0.0
    acc["joint_after_audio_share"] = float((joint & fooled["xA"]).sum() / joint.sum() * 100) if joint.any() else 0.0
    acc["joint_after_visual_share"] = float((joint & fooled["xV"]).sum() / joint.sum() * 100) if joint.any() else 0.0
    return acc


def robustness_improvement(row: dict, base: dict) -> float:
    """RI = (clean - clean_base) + (Avg - Avg_base), the appendix's definition."""
    return (row["clean"] - base["clean"]) + (row["avg"] - base["avg"])


def attack_spec_for(spec, eval_cfg, defense, modality):
    """The evaluation spec of one model: defended audio-visual models are attacked with
    `eval.defended_loss` (the released defense evaluation: CE + cos), every other model with `eval.loss`."""
    if defense != "none" and modality == "av" and eval_cfg.get("defended_loss"):
        return dataclasses.replace(spec, loss=eval_cfg.defended_loss)
    return spec
