"""graphc's version, in a leaf module: it imports nothing, so every layer may read it (a saved plan records
it) without importing the facade. The facade re-exports it as ``graphc.__version__``; pyproject.toml reads
it from here too."""
__version__ = "0.1.0"
