"""Deprecated alias of `sqdiff.preconditioners` (the kernels/preconditioners; renamed in 0.2)."""

from .preconditioners import *  # noqa: F403
from .preconditioners import __all__  # noqa: F401
