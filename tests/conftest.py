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


@pytest.fixture(autouse=True)
def free_compiled_programs():
    """Drop JAX's compiled programs after a test once the process holds many memory mappings: over
    the whole suite they reached the kernel's per-process limit, after which XLA:CPU compilation
    crashed with a segmentation fault late in CI runs (see avjax/compiled.py)."""
    yield
    from avjax import compiled
    compiled.release_if_many()


# The longest test files (minutes each on a 2-core machine), started first so that the two xdist workers
# (pytest.ini: one file per worker at a time) do not end with one long file running alone.
LONGEST_FIRST = ("tests/train/test_resume.py", "tests/test_notebooks.py", "tests/defenses/test_exfmem.py",
                 "tests/configs/test_configs.py", "tests/train/test_multihost.py",
                 "tests/train/test_data_parallel.py", "tests/evaluation/test_trained_model.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable: the order within each file and among the other files is kept
