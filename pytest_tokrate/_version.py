"""The package version, in one place (read by the runner, fingerprints and reports)."""

__version__ = "0.1.0"
