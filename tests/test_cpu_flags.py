"""Library users get avjax's XLA:CPU flags on import; a late import warns instead of pretending."""
import os
import subprocess
import sys

import pytest

from avjax import cpu_flags


def _python(code, **env):
    # No persistent compilation cache: a program loaded from it is not compiled, so nothing is dumped.
    base = {k: v for k, v in os.environ.items()
            if k not in ("XLA_FLAGS", cpu_flags.OPT_OUT, "JAX_COMPILATION_CACHE_DIR")}
    proc = subprocess.run([sys.executable, "-W", "always", "-c", code], env=dict(base, **env),
                          capture_output=True, text=True, timeout=120, check=True)
    return proc.stdout.strip(), proc.stderr


@pytest.mark.slow
def test_import_applies_flags_before_the_backend_starts_even_after_import_jax():
    out, err = _python("import os, jax, avjax; print(os.environ['XLA_FLAGS'])")
    assert out == " ".join(cpu_flags.CPU_XLA_FLAGS)
    assert "RuntimeWarning" not in err


def test_xla_reads_flags_set_after_import_jax_when_the_backend_starts(tmp_path):
    """The mechanism avjax relies on: XLA_FLAGS set after `import jax` still reaches XLA."""
    dump = tmp_path / "dump"
    _python(f"import os, jax; os.environ['XLA_FLAGS'] = '--xla_dump_to={dump}'; jax.jit(lambda x: x + 1)(1.0)")
    assert dump.is_dir() and os.listdir(dump)


def test_user_flags_kept_and_own_setting_of_the_option_respected():
    out, _ = _python("import os, avjax; print(os.environ['XLA_FLAGS'])",
                     XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert out.split() == ["--xla_force_host_platform_device_count=2", *cpu_flags.CPU_XLA_FLAGS]
    own = "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"
    out, _ = _python("import os, avjax; print(os.environ['XLA_FLAGS'])", XLA_FLAGS=own)
    assert out.split() == [own, *cpu_flags.CPU_XLA_FLAGS[1:]]  # the user's value of that option, ours of the others


def test_every_flag_is_one_this_xla_accepts():
    """XLA aborts the process on an option it does not know (a jax upgrade may drop one)."""
    out, _ = _python("import avjax, jax; print(jax.numpy.ones(2).sum())")
    assert out == "2.0"


@pytest.mark.slow
def test_late_import_warns_with_the_remedy_and_opt_out_silences_it():
    late = "import os, jax; jax.numpy.ones(1).block_until_ready(); import avjax; print(os.environ.get('XLA_FLAGS'))"
    out, err = _python(late)
    assert out == "None"
    assert "RuntimeWarning" in err and "XLA_FLAGS=" in err and cpu_flags.OPT_OUT in err
    out, err = _python(late, **{cpu_flags.OPT_OUT: "1"})
    assert "RuntimeWarning" not in err


def test_options_known_to_give_wrong_results_together_warn():
    wrong = "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0"
    out, err = _python("import avjax; print('imported')", XLA_FLAGS=wrong)
    assert out == "imported"
    assert "RuntimeWarning" in err and wrong in err and "Remove one of them" in err
    assert cpu_flags.known_wrong("--xla_force_host_platform_device_count=2 --xla_cpu_use_fusion_emitters=False "
                                 "--xla_backend_optimization_level=0") == [wrong]
    assert cpu_flags.known_wrong("--xla_cpu_use_fusion_emitters=0 --xla_backend_optimization_level=0") == [wrong]
    # either option alone, the legacy emitters with LLVM's optimisations on, or a level overridden later: no warning
    for fine in ("--xla_cpu_use_fusion_emitters=false", "--xla_backend_optimization_level=0",
                 "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=1",
                 "--xla_cpu_use_fusion_emitters=true --xla_backend_optimization_level=0",
                 "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false "
                 "--xla_backend_optimization_level=1"):
        assert cpu_flags.known_wrong(fine) == [], fine
    out, err = _python("import avjax; print('imported')", XLA_FLAGS="--xla_cpu_use_fusion_emitters=false "
                       "--xla_backend_optimization_level=1")
    assert out == "imported" and "RuntimeWarning" not in err
