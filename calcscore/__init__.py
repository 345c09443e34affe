"""calcscore: automatic calcium scoring in low-dose chest CT."""
__version__ = "0.1.0"
