"""The package version, in one place (pyproject.toml reads it too)."""

__version__ = "0.3.0"
