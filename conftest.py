"""Root conftest: the self-tests use pytester; the suite's plugin comes from its entry point."""

pytest_plugins = ["pytester"]
