defmodule SnakepitContractE2E.Adapter do
  @moduledoc """
  Snakepit's own `Snakepit.Adapters.GRPCPython`, except for what it launches.

  GRPCPython always launches its bundled `grpc_server.py`; this adapter takes the executable,
  script and arguments from `SNAKEPIT_E2E_WORKER_ARGV` (a JSON list: executable, script,
  arguments...), so Snakepit spawns the worker under test with its real argv, environment,
  readiness wait and gRPC client. Every other function is delegated unchanged, whatever the
  Snakepit version exports. Tool calls are also recorded, so the runner knows which worker
  process served each call.
  """

  @base Snakepit.Adapters.GRPCPython
  @own [executable_path: 0, script_path: 0, script_args: 0]
  @recorded [:grpc_execute, :grpc_execute_stream]

  for {name, arity} <- @base.__info__(:functions), {name, arity} not in @own do
    args = Macro.generate_arguments(arity, __MODULE__)

    if name in @recorded do
      def unquote(name)(unquote_splicing(args)) do
        SnakepitContractE2E.Calls.record(unquote(args))
        @base.unquote(name)(unquote_splicing(args))
      end
    else
      defdelegate unquote(name)(unquote_splicing(args)), to: @base
    end
  end

  def executable_path, do: Enum.at(worker_argv(), 0)
  def script_path, do: Enum.at(worker_argv(), 1)
  def script_args, do: Enum.drop(worker_argv(), 2)

  defp worker_argv do
    with text when is_binary(text) <- System.get_env("SNAKEPIT_E2E_WORKER_ARGV"),
         {:ok, [_, _ | _] = argv} <- Jason.decode(text),
         true <- Enum.all?(argv, &is_binary/1) do
      argv
    else
      _ -> raise "SNAKEPIT_E2E_WORKER_ARGV must be a JSON list [executable, script, args...]"
    end
  end
end
