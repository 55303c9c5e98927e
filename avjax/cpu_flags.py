"""XLA:CPU options measured to matter on CPU (see benchmarks/train_step.py).

Routing convolutions to Eigen instead of YNNPACK makes their weight gradient ~3x faster. Applied
before jax initialises its backend (by `python -m avjax.main` and the benchmarks), only when the user
has not set the option themselves.
"""
import os

CPU_XLA_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)


def apply():
    flags = os.environ.get("XLA_FLAGS", "")
    for flag in CPU_XLA_FLAGS:
        if flag.split("=")[0] not in flags:
            flags = f"{flags} {flag}".strip()
    os.environ["XLA_FLAGS"] = flags
