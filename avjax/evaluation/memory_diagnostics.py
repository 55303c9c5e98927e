"""Why an external memory (ExFMem) defends, or does not: what the memory does to clean and attacked features.

For a model defended by a memory, over the first `examples` test examples, per modality (the feature of the
input attacked alone: audio under the ✗A attack, the frame's under ✗V):
  * reconstruction error ||f - h M|| / ||f|| of the encoder feature f by its lasso code h, clean and attacked:
    the memory can only pull an attacked feature back if it reconstructs clean features well and attacked ones
    badly;
  * atoms used: nonzero entries of h;
  * nearest atom of another class: % of features whose nearest atom (Euclidean) was stored from an example of
    another class than the feature's (needs the atoms' labels, kept with the memory);
  * how far the attack moves the encoder feature, median ||f_adv - f||, against the median distance between
    atoms of different classes: a ratio near or above 1 moves features across the memory's classes, which no
    projection onto the memory can undo;
and the accuracy, clean and under the attack in each setting, as a function of the blend weight a of
a * (h M) + (1 - a) * f (the white-box attack rerun at each a): a = 0 is the model without its memory.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from avjax import parallel
from avjax.attacks import ModelFns
from avjax.defenses.memory import MODALITIES, memory_codes
from avjax.evaluation.common import SETTINGS, eval_batches, gather
from avjax.evaluation.robustness import EvalSpec, adversarial_inputs

ATTACKED_ALONE = {"visual": "xV", "audio": "xA"}


def has_memory(module) -> bool:
    return getattr(module, "memory", None) is not None


def _codes_and_reconstructions(fns, modality, features):
    spec, memory = fns.module.memory, fns.variables["memory"]
    bank = memory[modality]
    step = spec.step_visual if modality == "visual" else spec.step_audio
    codes = memory_codes(spec, bank, memory[f"lipschitz_{modality}"], features, step)
    return codes, codes @ bank


def _batch_features(fns, batch, spec, method):
    """{modality: {'clean' | 'attacked': (raw feature, code, reconstruction)}} of one batch."""
    image, audio = batch["image"], batch["audio"]
    (_, adv_audio), (adv_image, _) = adversarial_inputs(fns, batch, spec, method, settings=("xA", "xV"))
    clean = dict(zip(MODALITIES, fns.raw_features(image, audio)))
    attacked = {"visual": fns.raw_features(adv_image, audio)[0], "audio": fns.raw_features(image, adv_audio)[1]}
    out = {}
    for modality in MODALITIES:
        out[modality] = {}
        for kind, f in (("clean", clean[modality]), ("attacked", attacked[modality])):
            codes, recon = _codes_and_reconstructions(fns, modality, f)
            out[modality][kind] = (f, codes, recon)
    return out


def _batch_accuracy(fns, batch, spec, method):
    """{'clean' | setting: (B,) correct} of one batch."""
    label = batch["label"]
    correct = lambda image, audio: jnp.argmax(fns(image, audio)[0], -1) == label  # noqa: E731
    out = {"clean": correct(batch["image"], batch["audio"])}
    for setting, (adv_v, adv_a) in zip(SETTINGS, adversarial_inputs(fns, batch, spec, method)):
        out[setting] = correct(adv_v, adv_a)
    return out


_jit_features = jax.jit(_batch_features, static_argnames=("spec", "method"))
_jit_accuracy = jax.jit(_batch_accuracy, static_argnames=("spec", "method"))


def with_blend(fns, blend: float) -> ModelFns:
    """The same model and memory with blend weight `blend` (0: the memory is not used). The weight is a
    variable, not part of the module: the models of every weight share one compiled program."""
    module = fns.module.clone(memory=dataclasses.replace(fns.module.memory, blend=None))
    memory = {**fns.variables["memory"], "blend": jnp.float32(blend)}
    return ModelFns(module, {**fns.variables, "memory": memory})


def _median_distance_between_classes(bank, labels):
    d = np.linalg.norm(bank[:, None, :] - bank[None, :, :], axis=-1)
    other = labels[:, None] != labels[None, :]
    return float(np.median(d[other])) if other.any() else float("nan")


def _nearest_atom_labels(features, bank, atom_labels):
    d = ((features ** 2).sum(1)[:, None] - 2 * features @ bank.T + (bank ** 2).sum(1)[None, :])
    return atom_labels[np.argmin(d, axis=1)]


def summarize(parts: dict, labels, bank, atom_labels) -> dict:
    """The diagnostics of one modality from its (raw, code, reconstruction) arrays, clean and attacked."""
    out = {}
    for kind in ("clean", "attacked"):
        f, codes, recon = (np.asarray(x, np.float64) for x in parts[kind])
        err = np.linalg.norm(f - recon, axis=1) / np.maximum(np.linalg.norm(f, axis=1), 1e-12)
        out[kind] = {"reconstruction_error": float(np.mean(err)),
                     "atoms_used": float(np.mean(np.sum(np.abs(codes) > 0, axis=1)))}
        if atom_labels is not None:
            nearest = _nearest_atom_labels(f, np.asarray(bank, np.float64), atom_labels)
            out[kind]["nearest_atom_other_class"] = 100 * float(np.mean(nearest != labels))
    move = np.linalg.norm(np.asarray(parts["attacked"][0], np.float64) - np.asarray(parts["clean"][0], np.float64),
                          axis=1)
    out["attack_displacement"] = float(np.median(move))
    if atom_labels is not None:
        between = _median_distance_between_classes(np.asarray(bank, np.float64), atom_labels)
        out["atom_distance_between_classes"] = between
        out["displacement_ratio"] = out["attack_displacement"] / between
    return out


def evaluate(fns, source, transform, spec: EvalSpec, *, method, examples, blends, atom_labels, batch_size, mesh,
             workers, name) -> dict:
    """-> {'method', 'blend', 'modalities': {modality: summary}, 'blend_accuracy': [{'blend', 'clean', 'xA', ...}]}
    over the first `examples` test examples. `atom_labels`: the classes of the examples the memory's atoms
    were stored from (None: the class-dependent measures are left out)."""
    rep = parallel.replicated(mesh)
    blended = [jax.device_put(with_blend(fns, a), rep) for a in blends]
    fns = jax.device_put(fns, rep)
    parts = {m: {"clean": [[], [], []], "attacked": [[], [], []]} for m in MODALITIES}
    labels, correct = [], [dict() for _ in blends]
    for _, batch, mask, _ in eval_batches(source, transform, batch_size=batch_size, mesh=mesh, workers=workers,
                                          max_examples=examples, desc=f"memory {name}"):
        batch = {k: batch[k] for k in ("image", "audio", "label")}
        keep = np.asarray(mask)
        labels.append(gather(batch["label"])[keep])
        feats = _jit_features(fns, batch, spec, method)
        for modality, kinds in feats.items():
            for kind, arrays in kinds.items():
                for store, x in zip(parts[modality][kind], arrays):
                    store.append(gather(x)[keep])
        for acc, model in zip(correct, blended):
            for key, hit in _jit_accuracy(model, batch, spec, method).items():
                acc.setdefault(key, []).append(gather(hit)[keep])
    labels = np.concatenate(labels)
    memory = jax.device_get(fns.variables["memory"])
    atom_labels = None if atom_labels is None else np.asarray(atom_labels)
    summaries = {}
    for modality in MODALITIES:
        joined = {kind: tuple(np.concatenate(x) for x in arrays) for kind, arrays in parts[modality].items()}
        summaries[modality] = summarize(joined, labels, memory[modality], atom_labels)
    accuracy = [{"blend": float(a), **{k: 100 * float(np.mean(np.concatenate(v))) for k, v in acc.items()}}
                for a, acc in zip(blends, correct)]
    return {"method": method, "blend": float(fns.module.memory.blend), "n": int(labels.size),
            "modalities": summaries, "blend_accuracy": accuracy}


def markdown(res: dict, model_label: str) -> list[str]:
    """The diagnostics section of one memory model for results.md."""
    method = res["method"].upper()
    lines = ["", f"## What the memory does: {model_label}", "",
             f"Encoder features of {res['n']} test examples, clean and under {method} on that modality alone "
             "(audio: ✗A, visual: ✗V). Reconstruction error ||f - hM|| / ||f||; atoms used: nonzero code entries; "
             "nearest atom of another class: % of features whose nearest atom was stored from another class; "
             "displacement: median ||f_adv - f|| over the median distance between atoms of different classes.",
             "", "| feature | input | reconstruction error | atoms used | nearest atom of another class % | "
             "displacement / atom distance |", "|---|---|---|---|---|---|"]
    for modality, s in res["modalities"].items():
        for kind in ("clean", "attacked"):
            k = s[kind]
            other = k.get("nearest_atom_other_class")
            ratio = s.get("displacement_ratio") if kind == "attacked" else None
            setting = "✗A" if modality == "audio" else "✗V"
            lines.append(f"| {modality} | {kind if kind == 'clean' else method + ' ' + setting} | "
                         f"{k['reconstruction_error']:.3f} | {k['atoms_used']:.1f} | "
                         f"{'n/a' if other is None else f'{other:.1f}'} | "
                         f"{'' if ratio is None else f'{ratio:.2f}'} |")
    lines += ["", f"Accuracy (%) by blend weight a of a * (hM) + (1 - a) * f, {method} rerun at each a "
              f"(a = 0: no memory; the model's own a = {res['blend']:g} in bold):", "",
              "| a | clean | ✗A | ✗V | ✗AV |", "|---|---|---|---|---|"]
    for row in res["blend_accuracy"]:
        a = f"**{row['blend']:g}**" if np.isclose(row["blend"], res["blend"]) else f"{row['blend']:g}"
        lines.append(f"| {a} | " + " | ".join(f"{row[k]:.2f}" for k in ("clean", *SETTINGS)) + " |")
    return lines
