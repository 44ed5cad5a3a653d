"""Generated gRPC stubs for snakepit_bridge.proto (see protos/generate.py)."""
