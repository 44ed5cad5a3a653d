"""The emulated Elixir side: the BridgeServer a worker calls back (host.py, with session_store.py and
tool_registry.py), Snakepit's pool (pool/) and the scenario runner that drives it (scenarios.py). Starts
workers through the driver; knows nothing of judging."""
