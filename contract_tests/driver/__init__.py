"""Snakepit's side of a worker's life: launching it as Snakepit does (launcher.py, or container.py for an image),
waiting for readiness, heartbeats, the gRPC client, and who owns what a run leaves behind (run_tag.py,
ownership.py). Reads the contract and the protocol; knows nothing of the emulated Elixir side or of judging."""
