"""Per-example evidence for the HTML report: clean and adversarial inputs of one attack in the three
settings, the model's prediction for each, and the size of each perturbation (pixel L-inf in /255, audio
SNR in dB)."""
import jax
import jax.numpy as jnp
import numpy as np

from avjax import compiled
from avjax.evaluation.robustness import SETTINGS, EvalSpec, adversarial_inputs


def _predict_all(fns, batch, spec, method):
    advs = adversarial_inputs(fns, batch, spec, method)
    preds = {"clean": jnp.argmax(fns(batch["image"], batch["audio"])[0], -1)}
    for name, (adv_v, adv_a) in zip(SETTINGS, advs):
        preds[name] = jnp.argmax(fns(adv_v, adv_a)[0], -1)
    return {name: adv for name, adv in zip(SETTINGS, advs)}, preds


# one batch of one model per run: compiled as a program that runs once
_jit_predict_all = jax.jit(_predict_all, static_argnames=("spec", "method"), compiler_options=compiled.RUNS_ONCE)


def snr_db(clean, adversarial):
    """10 log10(|a|^2 / |a' - a|^2) per example; inf where the waveform is untouched."""
    noise = np.sum((np.asarray(adversarial, np.float64) - clean) ** 2, axis=-1)
    signal = np.sum(np.asarray(clean, np.float64) ** 2, axis=-1)
    with np.errstate(divide="ignore"):
        return np.where(noise > 0, 10 * np.log10(signal / np.maximum(noise, 1e-300)), np.inf)


def collect(fns, batch, spec: EvalSpec, method: str) -> dict:
    """-> numpy arrays: image, audio, label; adv {setting: (image, audio)}; pred {'clean'|setting: (B,)};
    linf_255 and snr_db {setting: (B,)}."""
    advs, preds = _jit_predict_all(fns, {k: batch[k] for k in ("image", "audio", "label")}, spec, method)
    image, audio = np.asarray(batch["image"]), np.asarray(batch["audio"])
    advs = {s: (np.asarray(v), np.asarray(a)) for s, (v, a) in advs.items()}
    return {
        "image": image, "audio": audio, "label": np.asarray(batch["label"]), "method": method,
        "adv": advs, "pred": {k: np.asarray(v) for k, v in preds.items()},
        "linf_255": {s: 255 * np.max(np.abs(v - image), axis=(1, 2, 3)) for s, (v, _) in advs.items()},
        "snr_db": {s: snr_db(audio, a) for s, (_, a) in advs.items()},
    }
