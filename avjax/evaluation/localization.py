"""Sound-source localization under attack: heat maps for clean and attacked inputs, and, where the data
has sounding-object boxes (the synthetic data), how well the heat map finds the object.

Per example, the heat map (the model's audio-visual scores upsampled to the frame, min-max normalised) is
compared with the box of the sounding object:
  * pointing game: the heat map's maximum (the centroid of its maximal plateau) lies inside the box;
  * IoU of the map thresholded at 0.5 with the box; cIoU@0.5 = share of examples with IoU >= 0.5
    (Senocak et al. 2018);
  * AUC: the area under the share of examples with IoU >= t, for t in [0, 1] (21 points).
Each is reported for clean inputs and for every attack of `eval.methods` in the settings ✗A, ✗V, ✗AV.
"""
import jax
import jax.numpy as jnp
import numpy as np

from avjax import compiled, parallel
from avjax.evaluation.common import SETTINGS, eval_batches, gather
from avjax.evaluation.robustness import EvalSpec, adversarial_inputs
from avjax.models.localization import heatmap

THRESHOLD = 0.5
AUC_POINTS = np.linspace(0.0, 1.0, 21)


def is_localization_model(module) -> bool:
    return getattr(module, "fusion", "") == "localization"


def normalized_heatmap(fns, image, audio):
    """-> ((B, H, H) heat maps in [0, 1] (per example min-max) of the model's scores at the frame's size,
    (B,) predicted classes)."""
    logits, out = fns(image, audio)
    heat = heatmap(out["scores"], image.shape[1])
    lo = heat.min(axis=(1, 2), keepdims=True)
    hi = heat.max(axis=(1, 2), keepdims=True)
    return (heat - lo) / jnp.maximum(hi - lo, 1e-12), jnp.argmax(logits, -1)


def box_masks(boxes, size):
    """(B, 4) boxes (y0, x0, y1, x1) in [0, 1] -> (B, size, size) bool masks of the pixels they cover."""
    centres = (jnp.arange(size) + 0.5) / size
    inside_y = (centres[None, :] >= boxes[:, 0:1]) & (centres[None, :] < boxes[:, 2:3])
    inside_x = (centres[None, :] >= boxes[:, 1:2]) & (centres[None, :] < boxes[:, 3:4])
    return inside_y[:, :, None] & inside_x[:, None, :]


def box_scores(heat, boxes):
    """-> (pointing hit (B,) bool, IoU of heat >= THRESHOLD with the box (B,))."""
    size = heat.shape[1]
    masks = box_masks(boxes, size)
    # the pointed-at location: the centroid of the map's maximal plateau (an upsampled map is flat around
    # its peak cell and at the frame's edges; argmax would pick the plateau's first pixel, a corner)
    peak = (heat >= heat.max(axis=(1, 2), keepdims=True) - 1e-6).astype(jnp.float32)
    centres = (jnp.arange(size) + 0.5) / size
    weight = jnp.sum(peak, axis=(1, 2))
    cy = jnp.sum(peak * centres[None, :, None], axis=(1, 2)) / weight
    cx = jnp.sum(peak * centres[None, None, :], axis=(1, 2)) / weight
    hit = (cy >= boxes[:, 0]) & (cy < boxes[:, 2]) & (cx >= boxes[:, 1]) & (cx < boxes[:, 3])
    on = heat >= THRESHOLD
    inter = jnp.sum(on & masks, axis=(1, 2))
    union = jnp.sum(on | masks, axis=(1, 2))
    return hit, inter / jnp.maximum(union, 1)


def _batch_maps(fns, batch, spec, methods):
    """{'clean' | 'method/setting': (heat (B,H,H), image the model saw (B,H,W,3), prediction (B,))}."""
    image, audio = batch["image"], batch["audio"]
    out = {"clean": (*normalized_heatmap(fns, image, audio), image)}
    for method in methods:
        for setting, (adv_v, adv_a) in zip(SETTINGS, adversarial_inputs(fns, batch, spec, method)):
            out[f"{method}/{setting}"] = (*normalized_heatmap(fns, adv_v, adv_a), adv_v)
    return {k: (heat, frames, pred) for k, (heat, pred, frames) in out.items()}


def _batch_scores(fns, batch, spec, methods):
    maps = _batch_maps(fns, batch, spec, methods)
    return {k: box_scores(heat, batch["box"]) for k, (heat, _, _) in maps.items()}


# the heat-map figure: one batch of one model per run, compiled as a program that runs once
_jit_maps = jax.jit(_batch_maps, static_argnames=("spec", "methods"), compiler_options=compiled.RUNS_ONCE)
_jit_scores = jax.jit(_batch_scores, static_argnames=("spec", "methods"))


def summarize(hits, ious) -> dict:
    """Pointing %, mean IoU, cIoU@0.5 % and AUC of per-example hits and IoUs."""
    ious = np.asarray(ious, np.float64)
    success = [(ious >= t).mean() for t in AUC_POINTS]
    return {"pointing": 100 * float(np.mean(hits)), "mean_iou": float(ious.mean()),
            "ciou": 100 * float(np.mean(ious >= THRESHOLD)),
            "auc": float(np.trapezoid(success, AUC_POINTS)), "n": int(ious.size)}


def evaluate(fns, source, transform, spec: EvalSpec, *, batch_size, mesh, workers, max_examples, name) -> dict:
    """{'clean' | 'method/setting': summary} over the test split (needs boxes in the examples)."""
    methods = tuple(spec.methods)
    fns = jax.device_put(fns, parallel.replicated(mesh))
    per_input = {}
    for _, batch, mask, _ in eval_batches(source, transform, batch_size=batch_size, mesh=mesh, workers=workers,
                                          max_examples=max_examples, desc=f"localize {name}"):
        if "box" not in batch:
            raise ValueError("localization metrics need the sounding object's box in every example "
                             "(the synthetic data has them); heat-map figures work on any data")
        scores = _jit_scores(fns, {k: batch[k] for k in ("image", "audio", "label", "box")}, spec, methods)
        keep = np.asarray(mask)
        for key, (hit, iou) in scores.items():
            hits, ious = per_input.setdefault(key, ([], []))
            hits.extend(gather(hit)[keep].tolist())
            ious.extend(gather(iou)[keep].tolist())
    return {key: summarize(h, i) for key, (h, i) in per_input.items()}


def heatmaps(fns, batch, spec: EvalSpec, methods) -> dict:
    """{key: (heat maps, frames the model saw, predicted classes)} of one batch, as numpy, for the figures."""
    maps = _jit_maps(fns, {k: batch[k] for k in ("image", "audio", "label")}, spec, tuple(methods))
    return {k: tuple(np.asarray(x) for x in v) for k, v in maps.items()}


METRICS = ("pointing", "mean_iou", "ciou", "auc")


def over_seeds(per_seed_results) -> dict:
    """{model: {input: {metric: [value per seed]}}} of the models with localization results in every seed."""
    names = [n for n, r in per_seed_results[0].items() if "localization" in r]
    out = {}
    for name in names:
        if not all(name in res and "localization" in res[name] for res in per_seed_results):
            continue
        keys = per_seed_results[0][name]["localization"]
        out[name] = {key: {m: [res[name]["localization"][key][m] for res in per_seed_results] for m in METRICS}
                     for key in keys}
    return out


def seeds_markdown(located: dict, labels: dict, seeds) -> list[str]:
    """The localization tables of a multi-seed run: mean ± std over the seeds, and each seed's pointing."""
    lines = []
    for name, per_input in located.items():
        lines += ["", f"## Sound-source localization: {labels.get(name, name)}", "",
                  f"Mean ± std over {len(seeds)} seeds ({', '.join(map(str, seeds))}); each seed's table is in its "
                  "own results.md. Pointing: the heat map's maximum inside the sounding object's box; cIoU@0.5: "
                  "share with IoU >= 0.5 of the map thresholded at 0.5; AUC over IoU thresholds.", "",
                  "| input | pointing % | mean IoU | cIoU@0.5 % | AUC | pointing % per seed |",
                  "|---|---|---|---|---|---|"]
        for key in sorted(per_input, key=_order):
            cells = per_input[key]
            stat = lambda m, f: f"{np.mean(cells[m]):{f}} ± {np.std(cells[m], ddof=1) if len(cells[m]) > 1 else 0:{f}}"  # noqa: E731
            lines.append(f"| {_input_name(key)} | {stat('pointing', '.2f')} | {stat('mean_iou', '.3f')} | "
                         f"{stat('ciou', '.2f')} | {stat('auc', '.3f')} | "
                         f"{', '.join(f'{v:.1f}' for v in cells['pointing'])} |")
    return lines


def _order(key):  # clean, then each attack in its settings' order xA, xV, xAV
    method, _, setting = key.partition("/")
    return (key != "clean", method, SETTINGS.index(setting) if setting else -1)


def _input_name(key):
    if key == "clean":
        return "clean"
    method, setting = key.split("/")
    return method.upper() + " " + {"xA": "✗A", "xV": "✗V", "xAV": "✗AV"}[setting]


def markdown(res: dict, model_label: str) -> list[str]:
    """The localization table of one model for results.md."""
    lines = ["", f"## Sound-source localization: {model_label}", "",
             "Heat map (audio-visual scores upsampled to the frame) against the sounding object's box. "
             "Pointing: the map's maximum inside the box; cIoU@0.5: share with IoU >= 0.5 of the map "
             "thresholded at 0.5; AUC over IoU thresholds.", "",
             "| input | pointing % | mean IoU | cIoU@0.5 % | AUC | n |", "|---|---|---|---|---|---|"]
    for key, s in sorted(res.items(), key=lambda kv: _order(kv[0])):
        lines.append(f"| {_input_name(key)} | {s['pointing']:.2f} | {s['mean_iou']:.3f} | {s['ciou']:.2f} | "
                     f"{s['auc']:.3f} | {s['n']} |")
    return lines
