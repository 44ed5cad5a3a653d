"""The live E2E tier: the scenario files run through the real Snakepit, compared with the pool emulator.

Snakepit (0.6.0 or 0.13.0) is built into a container image with our Mix host project (host/), from Hex or
from a directory of sources kept outside the repository (sources.py). The worker under test is spawned by
Snakepit inside that container (live.py); each scenario's clause outcomes are compared with the emulator's
for the same file (compare.py). Without sources, engine or base image the tier says NOT-RUN and why (tier.py).
"""
