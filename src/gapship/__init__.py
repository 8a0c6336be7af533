"""gapship: carry a complete Python (and GPU) environment to an offline Linux machine."""

__version__ = "0.1.0"
