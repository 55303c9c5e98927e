"""A model bound to its variables, as a pytree, so jitted attacks trace it once per shape.

`ModelFns(module, variables)` is callable like `logits_fn(image, audio) -> (logits, out)` and also
exposes the encoders, so an attack on one modality computes the other modality's features once
instead of at every step. Variables are pytree leaves (traced, never baked into the program as
constants); the module is static. Models are always applied with `train=False` and no mutable
collections: no attack ever updates BatchNorm statistics.

Every method is jitted (one compiled program per module, method and shapes), so a model called eagerly,
as in a notebook, runs one program instead of compiling and dispatching each of its operations; inside
a jitted attack the call is traced once per shape and inlined.
"""
import functools

import jax


@functools.partial(jax.jit, static_argnames=("method", "train"))
def _apply(fns, *args, method, train):
    kw = {} if train is None else {"train": train}
    return fns.module.apply(fns.variables, *args, method=method, **kw)


@jax.tree_util.register_pytree_node_class
class ModelFns:
    def __init__(self, module, variables):
        self.module = module
        self.variables = variables

    def tree_flatten(self):
        return (self.variables,), self.module

    @classmethod
    def tree_unflatten(cls, module, children):
        return cls(module, children[0])

    @property
    def uses_visual(self) -> bool:
        return getattr(self.module, "modality", "av") in ("av", "visual")

    @property
    def uses_audio(self) -> bool:
        return getattr(self.module, "modality", "av") in ("av", "audio")

    def __call__(self, image, audio):
        return _apply(self, image, audio, method=None, train=False)

    def encode_visual(self, image):
        if not self.uses_visual:
            return None
        return _apply(self, image, method="encode_visual", train=False)[0]

    def encode_audio(self, audio):
        if not self.uses_audio:
            return None
        return _apply(self, audio, method="encode_audio", train=False)

    def raw_features(self, image, audio):
        """(f_v, f_a) of the encoders before the external memory (models with one)."""
        return _apply(self, image, audio, method="raw_features", train=False)

    def classify(self, f_v, f_a):
        """-> (logits, out) from features."""
        logits, fused = _apply(self, f_v, f_a, method="classify", train=None)
        out = {"fused": fused}
        if f_v is not None:
            out["visual"] = f_v
        if f_a is not None:
            out["audio"] = f_a
        return logits, out


@jax.tree_util.register_pytree_node_class
class StaticFn:
    """Wraps a plain `logits_fn` as static pytree aux data (hashed by identity)."""

    def __init__(self, fn):
        self.fn = fn

    def tree_flatten(self):
        return (), self.fn

    @classmethod
    def tree_unflatten(cls, fn, children):
        del children
        return cls(fn)

    def __call__(self, image, audio):
        out = self.fn(image, audio)
        return out if isinstance(out, tuple) else (out, {})
