import Config

# The runner sets the pool per scenario; nothing starts before it does.
config :snakepit, pooling_enabled: false

# Warnings and errors only: the runner's result lines must stay readable on stdout.
config :logger, level: :warning
