"""tipd: a real-time daemon that keeps a scanning tunnelling microscope tip sharp."""

__version__ = "0.1.0"
