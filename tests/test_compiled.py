"""Compiled programs are dropped once the process holds many memory mappings (and only then)."""
import jax
import jax.numpy as jnp

from avjax import compiled


def test_release_if_many_drops_compiled_programs_above_the_limit():
    f = jax.jit(lambda x: jnp.sin(x) * 2)
    f(jnp.ones(3))
    assert f._cache_size() == 1
    assert compiled.mapped_regions() > 0
    assert not compiled.release_if_many(limit=10 ** 9) and f._cache_size() == 1
    assert compiled.release_if_many(limit=0) and f._cache_size() == 0
