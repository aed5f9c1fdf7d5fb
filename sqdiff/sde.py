"""Deprecated alias of `sqdiff.schedules` (the noise schedules; renamed in 0.2)."""

from .schedules import *  # noqa: F403
from .schedules import __all__  # noqa: F401
