import gc
import os

# The suite is bound by XLA:CPU compile time (hundreds of programs, most run for milliseconds).
# LLVM at O1 instead of O2: the L-CNN SU(2) training-and-sampling test compiled in 50 s instead
# of 72 s, the compute-bound 0-dim double-well test ran as fast, and the whole suite took 33.5
# instead of 44.1 CPU-minutes (README). Numerics are the same up to float rounding. Set before
# jax starts its backend; a user's own XLA_FLAGS choice wins. Subprocess tests inherit it.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=1"
    ).strip()

import jax  # noqa: E402
import pytest

jax.config.update("jax_default_matmul_precision", "highest")


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
