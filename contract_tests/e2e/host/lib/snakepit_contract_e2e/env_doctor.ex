defmodule SnakepitContractE2E.EnvDoctor do
  @moduledoc """
  Stands in for `Snakepit.EnvDoctor` (Snakepit's `:env_doctor_module` setting).

  Snakepit 0.8.0 - 0.8.9 run their doctor at application start whenever pooling is enabled, with any
  adapter: it imports grpc and Snakepit's showcase adapter with the Python `GRPCPython` would use and
  health-checks the bundled `grpc_server.py`. That judges Snakepit's own bridge, not the worker the
  scenario launches (from 0.9.0 the doctor runs only for `GRPCPython` pools: v0.9.0
  `lib/snakepit/application.ex:69`; before, v0.8.0 `application.ex:61-62`). The worker under test is
  judged by the pool coming up with it: `Pool.start` waits until every slot holds a live worker.
  """

  def ensure_python!(_opts \\ []), do: :ok
end
