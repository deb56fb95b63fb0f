"""The version of mcsim: a leaf, so any module may import it without importing the package's
other modules (``mcsim/__init__.py`` re-exports it)."""

__version__ = "0.1.0"
