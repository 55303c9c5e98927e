"""Keep the process below the kernel's limit on memory mappings while programs pile up.

Every XLA:CPU executable keeps memory mappings alive for as long as JAX caches it. A process that
compiles hundreds of attack programs (the standard protocol over many models, a test suite) can reach
the per-process limit (`vm.max_map_count`, usually 65530), after which compilation crashes with a
segmentation fault. `release_if_many` drops JAX's compiled programs once the process holds `limit`
mappings; they are recompiled when next needed.
"""
import gc

import jax

DEFAULT_LIMIT = 30000   # about half the usual vm.max_map_count (65530): room for one big module


def mapped_regions() -> int:
    """Memory mappings of this process (0 where /proc is not available)."""
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def release_if_many(limit: int = DEFAULT_LIMIT) -> bool:
    """Clear JAX's caches of compiled programs when the process holds more than `limit` mappings."""
    if mapped_regions() <= limit:
        return False
    jax.clear_caches()
    gc.collect()
    return True
