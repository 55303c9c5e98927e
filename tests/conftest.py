import importlib.util
import os

import numpy as np
import pytest

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="needs the torch extra")


@pytest.fixture(scope="session")
def golden():
    from tests import golden_spec as gs
    with np.load(gs.ORIGINAL_GOLDEN) as g:
        return {k: g[k] for k in g.files}


@pytest.fixture(scope="session")
def original_state(golden):
    from tests import golden_spec as gs
    return {part: gs.state_dict_from_golden(golden, part) for part in gs.PARTS}


@pytest.fixture
def original_dir(tmp_path, original_state):
    """The three original files written as .safetensors (no torch needed)."""
    from safetensors.numpy import save_file
    for part, sd in original_state.items():
        save_file({k: np.ascontiguousarray(v) for k, v in sd.items()},
                  os.path.join(tmp_path, f"{part}_best.safetensors"))
    return tmp_path


def _mapped_regions() -> int:
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


MAX_MAPPED_REGIONS = 20000  # well below the kernel's usual vm.max_map_count (65530)


@pytest.fixture(autouse=True)
def free_compiled_programs():
    """Drop JAX's compiled programs after a test once the process holds many memory mappings. Each
    XLA:CPU executable keeps mappings alive for as long as JAX caches it; over the whole suite they
    reached the kernel's per-process limit (vm.max_map_count), after which XLA:CPU compilation crashed
    with a segmentation fault late in CI runs."""
    yield
    if _mapped_regions() > MAX_MAPPED_REGIONS:
        import gc

        import jax
        jax.clear_caches()
        gc.collect()
