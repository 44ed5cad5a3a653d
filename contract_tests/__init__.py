"""snakepit-contract: the conformance suite for Snakepit workers."""

__version__ = "0.1.0"
