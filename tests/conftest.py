import gc
import os
import shutil
import tempfile

import pytest

# The suite is bound by XLA:CPU compile time (hundreds of programs, most run for milliseconds).
# LLVM at O1 instead of O2: the L-CNN SU(2) training-and-sampling test compiled in 50 s instead
# of 72 s, the compute-bound 0-dim double-well test ran as fast, and the whole suite took 33.5
# instead of 44.1 CPU-minutes (README). Numerics are the same up to float rounding. Set before
# jax starts its backend; a user's own XLA_FLAGS choice wins. Subprocess tests inherit it.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=1"
    ).strip()

# One persistent compilation cache per test run, shared by the xdist workers and the
# subprocesses they start: a program that several tests build (a sampler on the same action and
# shapes, the CLI's jitted steps, any program again after the module-end `jax.clear_caches()`
# below) compiles once: 5–10 % less time (tests/test_cli.py, alternating runs: 192 s without,
# 167 and 186 s with). Programs compiled in under 0.2 s are not stored (storing all was no
# faster). The process that starts the run (the xdist controller, or pytest without xdist)
# makes a new directory and removes it at the end; its workers and subprocesses inherit it
# through the environment. So a run measures its own compilation and never reads programs
# compiled by another version of sqdiff or jax. A
# cache the user set (JAX_COMPILATION_CACHE_DIR) wins.
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_CACHE = tempfile.mkdtemp(prefix="sqdiff-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def pytest_unconfigure(config):
    """The process that made the run's compilation cache removes it."""
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Free every compiled XLA program after each test module.

    Each XLA:CPU executable keeps ~9 memory mappings; the whole suite compiles thousands of
    programs (every eager op on a new shape is one), and a process that passes the kernel's
    `vm.max_map_count` (65530) dies inside LLVM with a segfault. Clearing JAX's caches between
    modules unmaps them (measured: 3091 → 508 maps after 300 small programs).
    """
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture
def x64():
    """Double precision for one test (exactness checks), single precision again after it."""
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)
