"""The clause checks, one module per contract area (test_<area>.py)."""
