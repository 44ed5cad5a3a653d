"""Generated gRPC stubs for snakepit_bridge.proto by grpcio-tools 1.85.1 and mypy-protobuf 5.1.0 (see protos/generate.py)."""
