defmodule SnakepitContractE2E.Calls do
  @moduledoc """
  Which worker OS process served each tool call.

  Real Snakepit returns only the tool's result. The adapter runs inside the GRPCWorker (or a
  task it started), which holds the Port of its worker process; `record/1` notes the command,
  its arguments and that process's OS pid, and the runner looks the call up afterwards.
  """

  @table :snakepit_contract_e2e_calls

  @doc "Create the table; the runner process owns it for the whole run."
  def init, do: :ets.new(@table, [:ordered_set, :public, :named_table])

  @doc "A position in the log: calls recorded later have a greater sequence number."
  def mark, do: :erlang.unique_integer([:monotonic, :positive])

  @doc "Note a call; a run that never created the table (the bench) records nothing and pays nothing for it."
  def record(call_args) do
    with true <- :ets.whereis(@table) != :undefined,
         {command, args} <- command_and_args(call_args) do
      :ets.insert(@table, {mark(), command, args, current_os_pid()})
    end
  end

  @doc "OS pid of the worker that received `command` with (at least) `args` after `since`."
  def served_by(since, command, args) do
    :ets.select(@table, [{{:"$1", command, :"$2", :"$3"}, [{:>, :"$1", since}], [{{:"$2", :"$3"}}]}])
    |> Enum.filter(fn {sent, _} -> Enum.all?(args, fn {k, v} -> Map.get(sent, k) == v end) end)
    |> List.last()
    |> case do
      {_, os_pid} -> os_pid
      nil -> nil
    end
  end

  # 0.6.0: (connection, command, args, ...); 0.13.0: (connection, session_id, command, args, ...).
  defp command_and_args(call_args) do
    call_args
    |> Enum.chunk_every(2, 1, :discard)
    |> Enum.find_value(fn
      [command, args] when is_binary(command) and is_map(args) and not is_struct(args) -> {command, args}
      _ -> nil
    end)
  end

  @doc "The OS pid of the worker process owned by this process or by the GRPCWorker that started it."
  def current_os_pid do
    [self() | Process.get(:"$callers", []) ++ Process.get(:"$ancestors", [])]
    |> Enum.find_value(&os_pid_of/1)
  end

  @doc "OS pid of the Port a GRPCWorker process is linked to; nil when it has none."
  def os_pid_of(pid) when is_pid(pid) do
    case Process.info(pid, :links) do
      {:links, links} ->
        Enum.find_value(links, fn
          port when is_port(port) ->
            case Port.info(port, :os_pid) do
              {:os_pid, os_pid} when is_integer(os_pid) -> os_pid
              _ -> nil
            end

          _ ->
            nil
        end)

      nil ->
        nil
    end
  end

  def os_pid_of(_), do: nil
end
