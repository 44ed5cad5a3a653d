"""`snakepit-contract bench`: what a worker costs, next to a bare grpcio server measured in the same run.

baselines.py (the bare servers, run as workers)  measure.py (one target, one repetition)
stats.py (percentiles, median and spread)  runner.py (targets x repetitions, ratios)  output.py (bench.json, table)
e2e.py (`bench --e2e`: the same call timed from Elixir through the real Snakepit, in the E2E tier's image)
"""
