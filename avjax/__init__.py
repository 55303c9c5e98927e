"""avjax: audio-visual event classifiers under multimodal adversarial attack, in JAX/Flax."""

__version__ = "0.1.0"


def _fast_cpu_path():
    """Library users (notebooks, scripts) get the XLA:CPU options `python -m avjax.main` sets: they are
    applied here, before JAX starts its backend; if it already has, a warning says what to do."""
    import sys

    from avjax import cpu_flags
    if cpu_flags.applied():
        return
    if "jax" in sys.modules:
        try:
            from jax._src import xla_bridge
            started = xla_bridge.backends_are_initialized()
        except (ImportError, AttributeError):  # a JAX without this private helper: assume started
            started = True
        if started:
            import warnings
            warnings.warn("avjax was imported after JAX started its backend, so its faster XLA:CPU options "
                          "are not in effect; import avjax before running any JAX computation, or set "
                          f"XLA_FLAGS='{' '.join(cpu_flags.CPU_XLA_FLAGS)}' before starting Python",
                          stacklevel=3)
            return
    cpu_flags.apply()


_fast_cpu_path()
