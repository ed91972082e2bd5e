"""pillowd: the daemon inside the Huggable Cloud Pillow."""

__version__ = "0.1.0"
