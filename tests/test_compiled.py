"""Compiled programs are dropped once the process holds many memory mappings (and only then)."""
import jax
import jax.numpy as jnp
import pytest

from avjax import compiled


@pytest.mark.slow
def test_release_if_many_drops_compiled_programs_above_the_limit():
    f = jax.jit(lambda x: jnp.sin(x) * 2)
    f(jnp.ones(3))
    assert f._cache_size() == 1
    assert compiled.mapped_regions() > 0
    assert not compiled.release_if_many(limit=10 ** 9) and f._cache_size() == 1
    assert compiled.release_if_many(limit=0) and f._cache_size() == 0


def _python(code, **env):
    import os
    import subprocess
    import sys
    base = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")
            and not k.startswith("JAX_PERSISTENT_CACHE")}
    return subprocess.run([sys.executable, "-c", code], env=dict(base, **env), capture_output=True, text=True,
                          timeout=120, check=True).stdout.strip().splitlines()[-1]


CACHE_SCRIPT = """
import os, sys, ml_collections, jax, jax.numpy as jnp
from avjax import compiled
used = compiled.use_persistent_cache(ml_collections.ConfigDict(dict(dir=sys.argv[1] if len(sys.argv) > 1 else {d!r},
                                                                   min_compile_time_s=0.0, max_size_gb=1.0)))
jax.jit(lambda x: jnp.tanh(x) @ x.T)(jnp.ones((64, 64))).block_until_ready()
print(used, len(os.listdir(used)) if used else 0)
"""


@pytest.mark.slow
def test_persistent_cache_keeps_programs_unless_the_user_chose_a_directory_or_turned_it_off(tmp_path):
    mine = tmp_path / "avjax_cache"
    used, entries = _python(CACHE_SCRIPT.format(d=str(mine))).split()
    assert used == str(mine) and int(entries) > 0
    theirs = tmp_path / "theirs"
    used, _ = _python(CACHE_SCRIPT.format(d=str(mine)), JAX_COMPILATION_CACHE_DIR=str(theirs)).split()
    assert used == str(theirs)
    assert _python(CACHE_SCRIPT.format(d="")).split() == ["0"]


@pytest.mark.slow
def test_the_size_bounded_cache_reads_its_entries_back_without_a_warning(tmp_path):
    """avjax bounds the cache's size, for which JAX needs `filelock` (a pinned dependency): without it every run
    warned that it could not read the cache entries back."""
    import os
    import subprocess
    import sys
    base = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")
            and not k.startswith("JAX_PERSISTENT_CACHE")}
    code = CACHE_SCRIPT.format(d=str(tmp_path / "bounded"))
    for _ in range(2):  # the second process reads the first one's entry back
        proc = subprocess.run([sys.executable, "-c", code], env=base, capture_output=True, text=True, timeout=120,
                              check=True)
        assert "filelock" not in proc.stderr and "Error reading persistent compilation cache" not in proc.stderr, \
            proc.stderr[-2000:]

