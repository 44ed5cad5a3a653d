"""CI and developer tooling for the containers tier: a private Docker engine and registry-free images.

Not part of the wheel; run it from the repository root as `python -m ci.engine`.
"""
