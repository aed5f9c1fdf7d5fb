"""The version of sqdiff, in one place (read by pyproject.toml and `sqdiff.__version__`)."""

__version__ = "0.2.0.dev0"
