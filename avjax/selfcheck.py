"""End-to-end self-check of an installation (no data needed): build, port, convert, reload, run.

    python -m avjax.selfcheck

0. imports every subpackage and module of the installed package (a wheel missing one fails here);
1. builds every model variant at the CPU-small width and checks its parameter count;
2. writes a randomly initialised checkpoint in the *original PyTorch layout* (sound_/frame_/
   classifier_*.safetensors with the original keys), converts it with `avjax.porting.convert`,
   reloads it and checks the logits equal the directly ported model's;
3. runs the paper-size AV model (224x224 frame, 65535 samples) forward once and reports the time.
"""
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np


# Every subpackage of avjax; tests/test_package.py keeps this list equal to the source tree's folders.
SUBPACKAGES = ("attacks", "configs", "data", "data.tfds", "defenses", "evaluation", "models", "porting", "train",
               "viz")


def import_everything() -> list[str]:
    """Import every avjax module that is installed; -> their names. A missing subpackage is an error."""
    import importlib
    import pkgutil

    import avjax
    for name in SUBPACKAGES:
        importlib.import_module(f"avjax.{name}")
    names = [m.name for m in pkgutil.walk_packages(avjax.__path__, "avjax.")]
    for name in names:
        if name != "avjax.main":  # absl flags: importing main defines them, harmless but noisy
            importlib.import_module(name)
    return names


def _original_layout_state(variables):
    """Invert the porting tables: avjax variables -> original-layout state_dicts (numpy)."""
    from avjax import porting
    out = {}
    tables = {"sound": porting.original_sound_table(), "frame": porting.original_frame_table(),
              "classifier": porting.original_classifier_table()}
    inverse = {"conv2d": lambda a: a.transpose(3, 2, 0, 1), "conv1d": lambda a: a.transpose(2, 1, 0),
               "dense": lambda a: a.T, "vector": lambda a: a}
    for part, table in tables.items():
        sd = {}
        for key, collection, path, layout in table:
            value = variables[collection]
            for p in path:
                value = value[p]
            sd[key] = np.ascontiguousarray(inverse[layout](np.asarray(value)))
        out[part] = sd
    return out


def main() -> int:
    from safetensors.numpy import save_file

    from avjax import model_dir, porting
    from avjax.porting import convert
    from avjax.models import build
    from avjax.models.variants import NUM_CLASSES, PARAM_COUNTS, all_variants

    print(f"jax {jax.__version__} on {jax.devices()}")
    import avjax
    print(f"avjax from {os.path.dirname(avjax.__file__)}: {len(import_everything())} modules import")
    for modality, fusion, width in all_variants():
        if width != 0.25:
            continue
        cfg = dict(modality=modality, width=width, num_classes=NUM_CLASSES, fusion=fusion or "concat")
        model = build(cfg)
        shapes = jax.eval_shape(lambda m=model: m.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                                       jnp.zeros((1, 4096))))
        n = sum(x.size for x in jax.tree.leaves(shapes["params"]))
        status = "ok" if n == PARAM_COUNTS[(modality, fusion, width)] else "MISMATCH"
        print(f"  {modality:6s} {fusion or '-':12s} width {width}: {n:>9,d} params  {status}")
        if status != "ok":
            return 1

    model = build(dict(modality="av", fusion="concat", num_classes=11))
    image = jax.random.uniform(jax.random.key(1), (2, 224, 224, 3))
    audio = jax.random.uniform(jax.random.key(2), (2, 65535), minval=-1.0, maxval=1.0)
    variables = jax.jit(model.init)(jax.random.key(0), image, audio)  # one program, not one per operation
    with tempfile.TemporaryDirectory() as tmp:
        for part, sd in _original_layout_state(variables).items():
            save_file(sd, os.path.join(tmp, f"{part}_best.safetensors"))
        convert.convert(tmp, os.path.join(tmp, "converted"), num_classes=11)
        module, _, loaded = model_dir.load_model(os.path.join(tmp, "converted"))
        ported_module, ported = porting.load_original_checkpoint(tmp, 11)
    apply = jax.jit(lambda v, x, a: module.apply(v, x, a)[0])
    t0 = time.perf_counter()
    logits = jax.block_until_ready(apply(loaded, image, audio))
    t1 = time.perf_counter()
    logits_direct = apply(ported, image, audio)
    # the same compiled program on the converted, the directly ported and the original variables
    same = bool(jnp.array_equal(logits, logits_direct)) and bool(
        jnp.array_equal(logits, apply(variables, image, audio)))
    print(f"original-layout checkpoint -> convert -> reload -> logits identical: {same}")
    print(f"paper-size AV forward (batch 2, 224^2, 65535 samples) incl. compile: {t1 - t0:.2f} s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
