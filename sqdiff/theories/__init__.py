"""Theories: actions and exactly solvable distributions."""

from .mixture import GaussianMixture

__all__ = ["GaussianMixture"]
