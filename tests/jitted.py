"""Flax models initialised and applied jitted in tests: one compiled program per module, method and shapes,
where an eager call compiles and dispatches each operation on its own (a ResNet18 + AudioNet forward: ~150
small programs; the attack tests' random model took 9.1 s to build eagerly and 4.3 s jitted on a 2-core CPU)."""
import functools

import jax


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init(module, options, rng, *args):
    return module.init(rng, *args, **dict(options))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _apply(module, options, variables, *args):
    return module.apply(variables, *args, **dict(options))


def _static(options):
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))


def init(module, rng, *args, **options):
    """`module.init(rng, *args, **options)`, jitted; `options` (train, ...) are static."""
    return _init(module, _static(options), rng, *args)


def apply(module, variables, *args, **options):
    """`module.apply(variables, *args, **options)`, jitted; `options` (method, train, mutable) are static."""
    return _apply(module, _static(options), variables, *args)
