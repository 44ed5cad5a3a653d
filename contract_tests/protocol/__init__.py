"""The wire between Snakepit and a worker: the generated gRPC stubs (proto/), Any-wrapped JSON values (codec.py)
and the language-neutral payloads every runner sends (payloads.py). Imports nothing else of the kit."""
