"""avjax: audio-visual event classifiers under multimodal adversarial attack, in JAX/Flax."""
from avjax import cpu_flags as _cpu_flags

__version__ = "0.1.0"

_cpu_flags.apply_on_import()  # before JAX starts its backend: see avjax/cpu_flags.py
