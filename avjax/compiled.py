"""Compiled programs: a persistent cache across runs, and staying below the kernel's limit on mappings.

`use_persistent_cache` keeps every program that took a while to compile on disk (JAX's persistent
compilation cache), so a second seed, a resumed run or the next experiment loads it instead of
compiling it again (XLA:CPU compile time dominates the small default job).

Every XLA:CPU executable keeps memory mappings alive for as long as JAX caches it. A process that
compiles hundreds of attack programs (the standard protocol over many models, a test suite) can reach
the per-process limit (`vm.max_map_count`, usually 65530), after which compilation crashes with a
segmentation fault. `release_if_many` drops JAX's compiled programs once the process holds `limit`
mappings; they are recompiled when next needed.

`RUNS_ONCE` holds the XLA options of programs that run once in a run.
"""
import gc
import logging
import os

import jax

log = logging.getLogger(__name__)

# XLA options of programs that run once in a run (initialisation, the report's gallery, heat-map figures): LLVM
# does not optimise them, which makes them compile about three times faster and run about two times slower; the
# values can differ from an optimised build in the last bit (where LLVM would fuse a multiply-add). They always
# use XLA:CPU's fusion emitters: the legacy ones compute wrong gradients without LLVM optimisation
# (`avjax.cpu_flags.KNOWN_WRONG`), and an XLA_FLAGS that selects them must not reach these programs.
RUNS_ONCE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": True}
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


def use_persistent_cache(cache) -> str:
    """Turn on JAX's persistent compilation cache as `cache` (config.compilation_cache) says: -> the
    directory used ('' when off). A cache directory chosen by the user through JAX's own setting
    (e.g. JAX_COMPILATION_CACHE_DIR) wins; `cache.dir = ''` turns avjax's off."""
    chosen = jax.config.jax_compilation_cache_dir
    if chosen:
        return chosen
    if not cache.dir:
        return ""
    path = os.path.abspath(os.path.expanduser(cache.dir))
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(cache.min_compile_time_s))
    jax.config.update("jax_compilation_cache_max_size", int(cache.max_size_gb * (1 << 30)))
    log.info("compiled programs are kept in %s (config.compilation_cache)", path)
    return path
