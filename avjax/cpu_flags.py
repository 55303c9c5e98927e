"""XLA:CPU options measured to matter on CPU (see benchmarks/train_step.py).

Routing convolutions to Eigen instead of YNNPACK makes their weight gradient ~3x faster. XLA reads
`XLA_FLAGS` once, when JAX starts its backend, so the flags are applied when avjax is imported (a
notebook or a script gets the same speed as `python -m avjax.main`), only where the user has not set
the option themselves. When JAX's backend started before avjax was imported, the flags can no longer
take effect and a warning says what to do. `AVJAX_NO_CPU_FLAGS=1` leaves XLA_FLAGS untouched.

Some combinations of XLA:CPU options make avjax's programs compute wrong values with the pinned jaxlib
(`KNOWN_WRONG`); importing avjax with one of them in XLA_FLAGS warns.
"""
import os
import sys
import warnings

CPU_XLA_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)
OPT_OUT = "AVJAX_NO_CPU_FLAGS"
# options that together give wrong values -> what goes wrong (jaxlib 0.10.2). With XLA:CPU's legacy elemental
# emitters and LLVM's optimisations off, the audio-visual model's input gradient comes out wrong: 68-79 % off for the
# ported network of tests/attacks/test_against_original.py, whose float64 comparisons then fail. At LLVM's
# optimisation level 1 those comparisons pass with the legacy emitters too. avjax's own programs compiled without
# LLVM optimisation (`avjax.compiled.RUNS_ONCE`) pin the fusion emitters, whatever XLA_FLAGS says.
KNOWN_WRONG = {
    ("--xla_cpu_use_fusion_emitters=false", "--xla_backend_optimization_level=0"):
        "XLA:CPU's legacy elemental emitters compute the audio-visual model's input gradients wrongly in programs "
        "compiled without LLVM optimisation (attacks would be too weak)",
}
_BOOLEAN = {"false": "0", "true": "1"}


def missing(flags: str) -> list[str]:
    """The avjax flags whose option `flags` (an XLA_FLAGS string) does not set."""
    return [flag for flag in CPU_XLA_FLAGS if flag.split("=")[0] not in flags]


def known_wrong(flags: str) -> list[str]:
    """The combinations of `KNOWN_WRONG` that `flags` (an XLA_FLAGS string) sets in full (the last value of an
    option counts), each as its options joined by a space."""
    given = dict(token.lower().partition("=")[::2] for token in flags.split())
    wrong = []
    for options in KNOWN_WRONG:
        if all(name in given and given[name] in (value, _BOOLEAN.get(value, value))
               for name, _, value in (option.partition("=") for option in options)):
            wrong.append(" ".join(options))
    return wrong


def apply():
    """Add the missing flags to XLA_FLAGS (effective if JAX has not started its backend yet)."""
    flags = os.environ.get("XLA_FLAGS", "")
    for flag in missing(flags):
        flags = f"{flags} {flag}".strip()
    os.environ["XLA_FLAGS"] = flags


def backend_started() -> bool:
    """Whether JAX already created its backends (after which XLA_FLAGS is no longer read)."""
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge
    return xla_bridge.backends_are_initialized()


def apply_on_import():
    """What `import avjax` does: apply the flags, or warn when it is too late for them to matter; warn about
    options known to give wrong results."""
    for options in known_wrong(os.environ.get("XLA_FLAGS", "")):
        warnings.warn(f"XLA_FLAGS sets {options}: {KNOWN_WRONG[tuple(options.split())]}. Remove one of them.",
                      RuntimeWarning, stacklevel=3)
    if os.environ.get(OPT_OUT, "") not in ("", "0"):
        return
    if not missing(os.environ.get("XLA_FLAGS", "")):
        return
    if backend_started():
        import jax
        if jax.default_backend() == "cpu":
            warnings.warn(
                "JAX started its backend before avjax was imported, so avjax's XLA:CPU flags cannot take "
                "effect (convolution gradients run ~3x slower on CPU). Import avjax before running any JAX "
                f"computation, or start Python with XLA_FLAGS='{' '.join(CPU_XLA_FLAGS)}'. "
                f"Set {OPT_OUT}=1 to silence this.", RuntimeWarning, stacklevel=3)
        return
    apply()
