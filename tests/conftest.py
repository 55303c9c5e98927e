import importlib.util
import os
import shutil
import tempfile

import numpy as np
import pytest


def _share_compiled_programs():
    """One persistent XLA compilation cache for the whole test session: the xdist workers and every
    subprocess a test starts (trainings killed and resumed, notebooks, the 2-process run) inherit it
    through the environment, so a program compiled once is loaded, not compiled again (a resumed
    training: 81 s -> 36 s). Made fresh by the controlling process for each session and removed at its
    end; the size limit turns on JAX's file lock, so two workers never read a half-written entry."""
    if "PYTEST_XDIST_WORKER" in os.environ or "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return None
    path = tempfile.mkdtemp(prefix="avjax-tests-xla-cache-")
    os.environ.update(JAX_COMPILATION_CACHE_DIR=path,
                      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.2",
                      JAX_COMPILATION_CACHE_MAX_SIZE=str(8 << 30))
    return path


_SESSION_CACHE = _share_compiled_programs()

# The suite is bound by XLA:CPU compilation, not by running the (tiny) programs: LLVM's backend
# optimisations off cut compile time by a third (a runlocal main job: 214 s -> 137 s) and slow the few
# tests that compute much. Results move only by float32 rounding (no fast math; a batch of one may sum in
# another order: tests/defenses/test_sparse_coding.py). Set in the environment, so the xdist workers and
# every subprocess a test starts inherit it; an XLA_FLAGS of the user's own that sets the level wins.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"


def _compile_fast():
    flags = os.environ.get("XLA_FLAGS", "")
    if TEST_XLA_FLAGS.split("=")[0] not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {TEST_XLA_FLAGS}".strip()


_compile_fast()


def pytest_configure(config):
    """One intra-op thread per core for each xdist worker (set before the workers start, so they and their
    subprocesses inherit it). PyTorch and OpenMP size their pools to every core of the machine; two workers
    on two cores then spin against each other, and a PyTorch reference attack that takes 0.3 s alone took
    7 s beside the other worker (tests/attacks/test_against_original.py, 74 s -> 34 s for its float64
    cases). A thread count the user set wins."""
    workers = getattr(config.option, "numprocesses", None)
    if isinstance(workers, int) and workers > 1 and "PYTEST_XDIST_WORKER" not in os.environ:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))


def pytest_unconfigure(config):
    if _SESSION_CACHE is not None:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)

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


# Scheduling on the two xdist workers (pytest.ini: --dist loadgroup). Files whose module fixtures are
# expensive (a training, a defense table, a prepared dataset) run whole on one worker (one xdist group per
# file, built once); the tests of every other file are spread over both workers one by one. The longest
# work is handed out first so that neither worker ends with a long file running alone.
GROUPED = ("tests/defenses/test_exfmem.py", "tests/evaluation/test_html_report.py", "tests/evaluation/test_seeds.py",
           "tests/evaluation/test_trained_model.py", "tests/models/test_localization.py",
           "tests/train/test_resume.py", "tests/configs/test_configs.py", "tests/data/test_layouts.py",
           "tests/models/test_golden.py", "tests/train/test_data_parallel.py", "tests/train/test_multihost.py",
           "tests/train/test_adversarial.py")
LONGEST_FIRST = ("tests/defenses/test_exfmem.py", "tests/train/test_resume.py", "tests/test_notebooks.py",
                 "tests/evaluation/test_html_report.py", "tests/evaluation/test_seeds.py",
                 "tests/models/test_localization.py",
                 "tests/train/test_multihost.py", "tests/train/test_data_parallel.py", "tests/test_docs.py",
                 "tests/configs/test_configs.py", "tests/evaluation/test_trained_model.py")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable: the order within each file and among the other files is kept
    for item in items:
        path = item.nodeid.split("::")[0]
        if path in GROUPED:
            item.add_marker(pytest.mark.xdist_group(path.replace("/", "_")))
