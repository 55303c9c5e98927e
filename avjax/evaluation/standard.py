"""The standard protocol on arrays, for a model brought from elsewhere (AutoAttack's `run_standard_evaluation`).

    report = avjax.evaluation.run_standard_evaluation(
        logits_fn, image, audio, label, eps_visual=4 / 255, eps_audio=0.01, key=jax.random.key(0))
    report["settings"]["xAV"]["robust_accuracy"], report["settings"]["xAV"]["flags"]

`logits_fn(image, audio)` returns logits or `(logits, out)` (any function, or an `avjax.attacks.ModelFns`);
`image` is (B, H, W, 3) pixels in [0, 1] before any normalisation, `audio` (B, T) waveforms in [-1, 1], `label`
(B,) class indices. Each setting is attacked in its own ball: xA the waveform at `eps_audio`, xV the frame at
`eps_visual`, xAV both at (eps_visual, eps_audio); `units='normalized'` reads `eps_visual` in ImageNet-normalised
units as the paper does. The attacks and the gradient-masking checklist are those of `avjax.evaluation.protocol`
(the config-driven evaluation runs the same batches through the same code); the transfer check needs a
`baseline` (the undefended model) and is reported as not run without one, never as passed.
"""
import jax
import numpy as np

from avjax import parallel
from avjax.attacks.core import as_model_fns
from avjax.attacks.threat import AUDIO_BOUNDS, PIXEL_BOUNDS, UNITS, pixel_eps
from avjax.common import IMAGENET_MEAN, IMAGENET_STD
from avjax.evaluation import protocol
from avjax.evaluation.robustness import SETTINGS

DEFAULT_ADAPTIVE = ("unrolled", "bpda_identity", "bpda_ridge")


def run_standard_evaluation(logits_fn, image, audio, label, *, eps_visual, eps_audio, units="pixel", key,
                            settings=SETTINGS, baseline=None, apgd_steps=100, square_queries=5000,
                            target_classes=9, batch_size=64, apgd_restarts=1, square_p_init=0.8, fab=True,
                            fab_targeted=True, checklist=True, large_eps_factor=10.0, max_large_eps_accuracy=5.0,
                            tolerance=1.0, swap_candidates=8, adaptive=DEFAULT_ADAPTIVE, unroll=1, mean=IMAGENET_MEAN,
                            std=IMAGENET_STD, mesh=None) -> dict:
    """-> {'n', 'clean_accuracy', 'settings': {setting: {'clean_accuracy', 'robust_accuracy', 'per_attack',
    'checks', 'flags'}}, 'attacks': {name: parameters}, 'per_example': {...}}, accuracies in %: the worst case
    per example over the attack ensemble (`robust_accuracy`), each attack's accuracy (`per_attack`), the
    checklist (`checks`: setting, check, passed (True / False / None = not run), status, detail) and `flags`, the
    names of the checks that failed. Clear errors for inputs that do not fit (see `check_inputs`)."""
    if jax.process_count() > 1:
        raise ValueError("run_standard_evaluation takes whole arrays in one process; on several hosts run the "
                         "config-driven protocol (eval.protocol='standard'), which reads each host's share")
    image, audio, label = np.asarray(image), np.asarray(audio), np.asarray(label)
    settings = tuple(settings)
    fns = as_model_fns(logits_fn)
    check_inputs(fns, image, audio, label, eps_visual=eps_visual, eps_audio=eps_audio, units=units, std=std,
                 settings=settings, baseline=baseline)
    spec = protocol.ProtocolSpec(
        units=units, mean=tuple(mean), std=tuple(std), eps_audio_only=float(eps_audio),
        eps_visual_only=float(eps_visual), eps_joint=(float(eps_visual), float(eps_audio)),
        apgd_steps=apgd_steps, apgd_restarts=apgd_restarts, target_classes=target_classes,
        square_queries=square_queries, square_p_init=square_p_init, adaptive=tuple(adaptive), unroll=unroll,
        checklist=checklist, large_eps_factor=large_eps_factor, max_large_eps_accuracy=max_large_eps_accuracy,
        tolerance=tolerance, seed=0, settings_run=settings, swap_candidates=swap_candidates, fab=fab,
        fab_targeted=fab_targeted)
    mesh = mesh or parallel.make_mesh()
    batch_size = min(batch_size, len(label))
    batch_size += -batch_size % mesh.devices.size     # divides over the devices
    res = protocol.attack_batches(fns, array_batches(image, audio, label, batch_size, mesh), spec, mesh=mesh,
                                  root=key, name="run_standard_evaluation",
                                  transfer_fns=as_model_fns(baseline) if baseline is not None else None)
    return _report(res, spec)


def check_inputs(fns, image, audio, label, *, eps_visual, eps_audio, units, std, settings, baseline):
    """ValueError, naming the argument and the problem, for inputs the protocol cannot attack as asked."""
    if units not in UNITS:
        raise ValueError(f"units={units!r}; choose one of {UNITS}")
    unknown = set(settings) - set(SETTINGS)
    if unknown or not settings:
        raise ValueError(f"settings={settings}: choose from {SETTINGS}")
    if image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError(f"image: expected (B, H, W, 3) frames, got shape {image.shape}")
    if audio.ndim != 2:
        raise ValueError(f"audio: expected (B, T) waveforms, got shape {audio.shape}")
    if label.ndim != 1 or not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"label: expected (B,) integer class indices, got {label.dtype} of shape {label.shape}")
    if not image.shape[0] == audio.shape[0] == label.shape[0] or label.shape[0] == 0:
        raise ValueError(f"image, audio and label hold {image.shape[0]}, {audio.shape[0]} and {label.shape[0]} "
                         "examples: give the same number (at least one)")
    for name, x, (lo, hi), hint in (("image", image, PIXEL_BOUNDS, "pass pixels before any normalisation"),
                                    ("audio", audio, AUDIO_BOUNDS, "pass waveforms scaled to [-1, 1]")):
        if not np.all(np.isfinite(x)) or x.min() < lo or x.max() > hi:
            raise ValueError(f"{name}: values must be finite and lie in [{lo:g}, {hi:g}] (found {np.nanmin(x):.4g} "
                             f"to {np.nanmax(x):.4g}); {hint}")
    needs = {"xA": ("eps_audio",), "xV": ("eps_visual",), "xAV": ("eps_visual", "eps_audio")}
    eps = {"eps_visual": float(eps_visual), "eps_audio": float(eps_audio)}
    for setting in settings:
        for name in needs[setting]:
            if not eps[name] > 0:
                raise ValueError(f"setting {setting} attacks with {name}={eps[name]:g}: give an eps > 0 (or leave "
                                 f"{setting} out of settings)")
    if max(pixel_eps(eps["eps_visual"], units, std)) >= PIXEL_BOUNDS[1] - PIXEL_BOUNDS[0]:
        raise ValueError(f"eps_visual={eps['eps_visual']:g} ({units} units) covers the whole pixel range [0, 1]: "
                         "give eps as a fraction of the range (e.g. 4/255, not 4)")
    if eps["eps_audio"] >= AUDIO_BOUNDS[1] - AUDIO_BOUNDS[0]:
        raise ValueError(f"eps_audio={eps['eps_audio']:g} covers the whole waveform range [-1, 1]")
    n = min(len(label), 8)
    for who, model in (("logits_fn", fns), ("baseline", baseline)):
        if model is None:
            continue
        logits = np.asarray(as_model_fns(model)(image[:n], audio[:n])[0])
        if logits.ndim != 2 or logits.shape[0] != n:
            raise ValueError(f"{who}: expected (B, classes) logits, got shape {logits.shape}")
        if not np.all(np.isfinite(logits)):
            raise ValueError(f"{who}: non-finite logits on the clean inputs (examples "
                             f"{np.flatnonzero(~np.all(np.isfinite(logits), -1)).tolist()} of the first {n})")
        classes = logits.shape[-1]
        bad = np.flatnonzero((label < 0) | (label >= classes))
        if bad.size:
            raise ValueError(f"label: {bad.size} label(s) outside the {classes} classes of {who}'s logits "
                             f"(e.g. label[{bad[0]}] = {label[bad[0]]})")


def array_batches(image, audio, label, batch_size, mesh):
    """(index, global batch, mask) over the arrays in batches of `batch_size`, the last one padded with copies of
    its first example (masked out), so that one compiled program serves every batch."""
    for index, start in enumerate(range(0, len(label), batch_size)):
        take = np.arange(start, min(start + batch_size, len(label)))
        mask = np.ones(batch_size, bool)
        mask[take.size:] = False
        take = np.concatenate([take, np.full(batch_size - take.size, take[0])])
        local = {"image": image[take].astype(np.float32), "audio": audio[take].astype(np.float32),
                 "label": label[take].astype(np.int32)}
        yield index, parallel.global_batch(local, mesh), mask


def _report(res, spec) -> dict:
    out = {"n": res["n"], "clean_accuracy": res["clean"], "settings": {},
           "attacks": {a: spec.parameters(a) for a in res["attacks"]}, "per_example": res["per_example"]}
    for setting, row in res["settings"].items():
        checks = [c for c in res["checklist"] if c["setting"] == setting]
        out["settings"][setting] = {
            "clean_accuracy": res["clean"], "robust_accuracy": row["worst"],
            "per_attack": {k: v for k, v in row.items() if k not in ("worst", "rescore")},
            "rescore_disagreements": row.get("rescore", {}), "checks": checks,
            "flags": [c["check"] for c in protocol.failed_checks(checks)]}
    return out
