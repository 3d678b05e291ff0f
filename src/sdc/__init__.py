"""sdc: a spoken-digit recognizer trained on the Free Spoken Digit Dataset."""

__version__ = "0.1.0"

LABELS: tuple[str, ...] = tuple(str(d) for d in range(10))
"""Class names, index == digit: every checkpoint stores its own copy of this list."""
