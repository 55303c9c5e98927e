"""End-to-end self-check of an installation (no data needed): build, port, convert, reload, run.

    python -m avjax.selfcheck

1. builds every model variant at the CPU-small width and checks its parameter count;
2. writes a randomly initialised checkpoint in the *original PyTorch layout* (sound_/frame_/
   classifier_*.safetensors with the original keys), converts it with `avjax.convert_original`,
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

    from avjax import checkpoint, convert_original, porting
    from avjax.models import build
    from avjax.models.variants import NUM_CLASSES, PARAM_COUNTS, all_variants

    print(f"jax {jax.__version__} on {jax.devices()}")
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
    variables = model.init(jax.random.key(0), image, audio)
    with tempfile.TemporaryDirectory() as tmp:
        for part, sd in _original_layout_state(variables).items():
            save_file(sd, os.path.join(tmp, f"{part}_best.safetensors"))
        convert_original.convert(tmp, os.path.join(tmp, "converted"), num_classes=11)
        module, _, loaded = checkpoint.load_model(os.path.join(tmp, "converted"))
        ported_module, ported = porting.load_original_checkpoint(tmp, 11)
    apply = jax.jit(lambda v, x, a: module.apply(v, x, a)[0])
    t0 = time.perf_counter()
    logits = jax.block_until_ready(apply(loaded, image, audio))
    t1 = time.perf_counter()
    logits_direct = apply(ported, image, audio)
    same = bool(jnp.array_equal(logits, logits_direct)) and bool(
        jnp.array_equal(logits, model.apply(variables, image, audio)[0]))
    print(f"original-layout checkpoint -> convert -> reload -> logits identical: {same}")
    print(f"paper-size AV forward (batch 2, 224^2, 65535 samples) incl. compile: {t1 - t0:.2f} s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
