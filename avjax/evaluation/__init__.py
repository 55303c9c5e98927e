"""Robustness evaluation: clean accuracy, xA / xV / xAV under FGSM, PGD, MIM, Avg, RI, eps sweeps; the standard
protocol (`run_standard_evaluation` on arrays, avjax.evaluation.standard)."""


def __getattr__(name):
    if name == "run_standard_evaluation":   # imported on first use: the package's modules import each other
        from avjax.evaluation.standard import run_standard_evaluation
        return run_standard_evaluation
    raise AttributeError(f"module 'avjax.evaluation' has no attribute {name!r}")
