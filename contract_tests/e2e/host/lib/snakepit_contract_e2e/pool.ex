defmodule SnakepitContractE2E.Pool do
  @moduledoc """
  Snakepit's application, started per scenario with that scenario's pool, and the few
  things the runner needs to see inside it: worker processes, their OS pids and channels.

  Only public Snakepit functions and OTP introspection are used; where 0.6.0 and 0.13.0
  differ, the function exported by the running version decides.
  """

  alias SnakepitContractE2E.Calls

  @start_timeout_ms 60_000

  @doc "Start Snakepit with a pool for `pool` (the scenario's pool object); error text if it did not come up."
  def start(pool) do
    size = pool["size"]
    Application.put_env(:snakepit, :adapter_module, SnakepitContractE2E.Adapter)
    # 0.8.0 - 0.8.9 check their own bundled Python bridge at start whenever pooling is on, whatever the adapter
    # (from 0.9.0 only for GRPCPython pools); the worker under test is not that bridge.
    Application.put_env(:snakepit, :env_doctor_module, SnakepitContractE2E.EnvDoctor)
    Application.put_env(:snakepit, :pooling_enabled, true)
    Application.put_env(:snakepit, :pool_config, pool_config(pool))

    # Each scenario starts from Snakepit's defaults: a quota set by an earlier one must not linger.
    Application.put_env(:snakepit, :session_store, if(max = pool["max_sessions"], do: %{max_sessions: max}, else: %{}))

    with {:ok, _} <- Application.ensure_all_started(:snakepit),
         :ok <- await_ready(size) do
      set_default_ttl(pool["session_ttl_s"])
      :ok
    else
      {:error, reason} -> {:error, "Snakepit did not start a pool of #{size}: #{inspect(reason)}"}
    end
  end

  defp pool_config(pool) do
    base = %{pool_size: pool["size"]}

    case pool["affinity"] do
      nil -> base
      mode -> Map.put(base, :affinity, String.to_atom(mode))
    end
  end

  # Judged by explicit state, never by a return value alone: every slot must hold a live worker.
  defp await_ready(size) do
    deadline = System.monotonic_time(:millisecond) + @start_timeout_ms

    Stream.repeatedly(fn -> Process.sleep(100) end)
    |> Enum.find_value(fn _ ->
      cond do
        length(worker_os_pids()) == size -> :ok
        System.monotonic_time(:millisecond) > deadline -> {:error, {:workers_ready, length(worker_os_pids())}}
        true -> nil
      end
    end)
  end

  defp set_default_ttl(nil), do: :ok

  defp set_default_ttl(ttl) do
    :sys.replace_state(Snakepit.Bridge.SessionStore, fn state -> %{state | default_ttl: ttl} end)
    :ok
  end

  @doc "Stop Snakepit; returns what its workers were, for the leftovers check."
  def stop do
    workers = Enum.map(worker_os_pids(), fn os_pid -> %{os_pid: os_pid, ready_file: ready_file(os_pid)} end)
    Application.stop(:snakepit)
    workers
  end

  @doc "GRPCWorker processes of the pool, by worker id."
  def workers do
    case Process.whereis(Snakepit.Pool) do
      nil ->
        []

      _ ->
        for id <- safe_list_workers(), [{pid, _} | _] <- [Registry.lookup(Snakepit.Pool.Registry, id)] do
          {id, pid}
        end
    end
  end

  defp safe_list_workers do
    Snakepit.Pool.list_workers()
  catch
    :exit, _ -> []
  end

  def worker_os_pids do
    for {_, pid} <- workers(), os_pid = Calls.os_pid_of(pid), do: os_pid
  end

  @doc """
  SIGKILL a worker's OS process, as an OOM killer would, and return once Snakepit has seen the death:
  its GRPCWorker has exited and the Pool has handled the exit (the emulator's crash does the same).
  """
  def crash(os_pid) do
    owner = Enum.find_value(workers(), fn {_, pid} -> if Calls.os_pid_of(pid) == os_pid, do: pid end)
    System.cmd("kill", ["-KILL", Integer.to_string(os_pid)], stderr_to_stdout: true)

    if owner do
      ref = Process.monitor(owner)

      receive do
        {:DOWN, ^ref, :process, _, _} -> :ok
      after
        10_000 -> Process.demonitor(ref, [:flush])
      end

      # A call to the Pool is handled after the exit signal it already has in its mailbox.
      safe_list_workers()
    end

    :ok
  end

  @doc "Wait until the pool is back to `size` live workers, none of them `old_os_pid`."
  def wait_restarted(size, old_os_pid, timeout_ms) do
    deadline = System.monotonic_time(:millisecond) + timeout_ms

    Stream.repeatedly(fn -> Process.sleep(100) end)
    |> Enum.find_value(fn _ ->
      pids = worker_os_pids()

      cond do
        length(pids) == size and old_os_pid not in pids -> :ok
        System.monotonic_time(:millisecond) > deadline -> {:error, "pool has workers #{inspect(pids)} after #{timeout_ms} ms"}
        true -> nil
      end
    end)
  end

  @doc """
  Wait until every slot holds a live worker that the Pool has checked in: its stats count them all
  available and none busy. Snakepit replies to a caller before it processes the check-in.
  """
  def wait_idle(size, timeout_ms) do
    deadline = System.monotonic_time(:millisecond) + timeout_ms

    Stream.repeatedly(fn -> Process.sleep(10) end)
    |> Enum.find_value(fn _ ->
      stats = Snakepit.Pool.get_stats()

      cond do
        stats.available == size and stats.busy == 0 and length(worker_os_pids()) == size -> :ok
        System.monotonic_time(:millisecond) > deadline -> {:error, "pool stats #{inspect(stats)} after #{timeout_ms} ms"}
        true -> nil
      end
    end)
  end

  @doc "Each worker's gRPC channel, as Snakepit's GRPCWorker holds it."
  def channels do
    for {id, pid} <- workers() do
      channel =
        case Snakepit.GRPCWorker.get_channel(pid) do
          {:ok, channel} -> channel
          other -> other
        end

      {id, channel}
    end
  end

  @doc "Address of Snakepit's own gRPC server (BridgeServer), as the workers are told."
  def elixir_address do
    if Code.ensure_loaded?(Snakepit.GRPC.Listener) and function_exported?(Snakepit.GRPC.Listener, :address, 0) do
      Snakepit.GRPC.Listener.address()
    else
      "localhost:#{Application.get_env(:snakepit, :grpc_port, 50051)}"
    end
  end

  defp ready_file(os_pid) do
    case File.read("/proc/#{os_pid}/environ") do
      {:ok, environ} ->
        environ
        |> String.split(<<0>>)
        |> Enum.find_value(fn
          "SNAKEPIT_READY_FILE=" <> path -> path
          _ -> nil
        end)

      _ ->
        nil
    end
  end
end
