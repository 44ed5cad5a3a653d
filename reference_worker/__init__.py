"""Minimal, fast, fully conforming Snakepit worker: the suite must pass 100 % against it."""
