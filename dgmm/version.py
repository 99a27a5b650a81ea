"""The version of dgmm (one place; the package, model files and checkpoints read it)."""

__version__ = "0.1.0"
