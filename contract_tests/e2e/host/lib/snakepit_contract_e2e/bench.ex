defmodule SnakepitContractE2E.Bench do
  @moduledoc """
  What a call costs through real Snakepit: `Snakepit.execute/3` of the bench's timing tool, timed from
  Elixir, for each worker and pool size (docs/bench.md, "Through real Snakepit").

  Every round measures every target at every pool size once, in turn, each on a fresh Snakepit
  application and pool, so a noisy machine's drift touches every target alike. One measurement:
  untimed warm-up calls (sequential, then from all callers at once, so every worker of the pool has
  served), `calls` sequential calls each timed, then `calls` calls from `concurrency` callers at once,
  timed as a whole. It prints one `bench_sample` line, or one `bench_error` line and stops: a target
  that cannot start or fails a call leaves nothing worth measuring after it.
  """

  alias SnakepitContractE2E.{Output, Pool}

  @ready_timeout_ms 60_000
  @exit_timeout_ms 10_000

  def run(config) do
    plan = for round <- 1..config["rounds"], target <- config["targets"], size <- config["pool_sizes"],
               do: {round, target, size}

    Enum.reduce_while(plan, :ok, fn {round, target, size}, :ok ->
      where = %{round: round, target: target["name"], pool_size: size}

      case sample(config, target, size) do
        {:ok, figures} ->
          Output.emit("bench_sample", Map.merge(where, figures))
          {:cont, :ok}

        {:error, why} ->
          Output.emit("bench_error", Map.put(where, :reason, why))
          {:halt, :error}
      end
    end)
  end

  defp sample(config, target, size) do
    use_target(target)

    result =
      try do
        with :ok <- Pool.start(%{"size" => size}),
             :ok <- Pool.wait_idle(size, @ready_timeout_ms) do
          measure(config)
        end
      rescue
        error -> {:error, Exception.format(:error, error, __STACKTRACE__)}
      catch
        kind, reason -> {:error, Exception.format(kind, reason, __STACKTRACE__)}
      end

    stopped = Pool.stop()
    await_exit(Enum.map(stopped, & &1.os_pid))
    result
  end

  # The adapter reads the worker's argv at every spawn; Snakepit's workers inherit the BEAM's environment.
  defp use_target(target) do
    System.put_env("SNAKEPIT_E2E_WORKER_ARGV", Jason.encode!(target["argv"]))
    for {key, value} <- target["env"] || %{}, do: System.put_env(key, value)
  end

  defp measure(config) do
    call = fn -> call(config["tool"], config["params"]) end
    callers = config["concurrency"]

    with :ok <- repeat(call, config["warmup"]),
         {:ok, _} <- concurrently(call, callers, max(config["warmup"], callers)),
         cpu_before = cpu_ticks(),
         {:ok, latencies, elapsed_ns} <- timed(call, config["calls"]),
         cpu_after = cpu_ticks(),
         {:ok, concurrent_elapsed_ns} <- concurrently(call, callers, config["calls"]) do
      {:ok, %{latencies_ns: latencies, elapsed_ns: elapsed_ns, concurrency: callers,
              concurrent_calls: div(config["calls"], callers) * callers,
              concurrent_elapsed_ns: concurrent_elapsed_ns,
              worker_cpu_ticks: cpu_after.workers - cpu_before.workers, beam_cpu_ticks: cpu_after.beam - cpu_before.beam}}
    end
  end

  # User + system CPU time, in clock ticks, of the pool's worker processes and of this BEAM: where a call's time goes.
  defp cpu_ticks do
    %{workers: Pool.worker_os_pids() |> Enum.map(&process_ticks/1) |> Enum.sum(), beam: process_ticks("self")}
  end

  defp process_ticks(os_pid) do
    with {:ok, stat} <- File.read("/proc/#{os_pid}/stat"),
         [_, after_name] <- String.split(stat, ") ", parts: 2),
         [utime, stime] <- after_name |> String.split() |> Enum.slice(11, 2) do
      String.to_integer(utime) + String.to_integer(stime)
    else
      _ -> 0
    end
  end

  defp call(tool, params) do
    case Snakepit.execute(tool, params) do
      {:ok, _} -> :ok
      other -> {:error, "Snakepit.execute(#{inspect(tool)}) returned #{inspect(other, limit: 20)}"}
    end
  end

  defp repeat(_call, 0), do: :ok

  defp repeat(call, n) do
    with :ok <- call.(), do: repeat(call, n - 1)
  end

  # Each call's round trip, and the wall time of all of them.
  defp timed(call, n) do
    first = System.monotonic_time(:nanosecond)

    Enum.reduce_while(1..n, {:ok, []}, fn _, {:ok, acc} ->
      started = System.monotonic_time(:nanosecond)

      case call.() do
        :ok -> {:cont, {:ok, [System.monotonic_time(:nanosecond) - started | acc]}}
        error -> {:halt, error}
      end
    end)
    |> case do
      {:ok, latencies} -> {:ok, Enum.reverse(latencies), System.monotonic_time(:nanosecond) - first}
      error -> error
    end
  end

  # `calls` calls (rounded down to a multiple of `callers`) from `callers` processes at once: wall time in ns.
  defp concurrently(call, callers, calls) do
    per_caller = div(calls, callers)
    started = System.monotonic_time(:nanosecond)

    failures =
      1..callers
      |> Task.async_stream(fn _ -> repeat(call, per_caller) end, max_concurrency: callers, timeout: :infinity)
      |> Enum.reject(&(&1 == {:ok, :ok}))

    elapsed = System.monotonic_time(:nanosecond) - started

    case failures do
      [] -> {:ok, elapsed}
      [{:ok, error} | _] -> error
      [other | _] -> {:error, "a concurrent caller failed: #{inspect(other, limit: 20)}"}
    end
  end

  # The next pool must not share the cores with a worker of this one that is still going away.
  defp await_exit(os_pids) do
    deadline = System.monotonic_time(:millisecond) + @exit_timeout_ms

    Enum.each(os_pids, fn os_pid ->
      unless wait_gone(os_pid, deadline) do
        System.cmd("kill", ["-KILL", Integer.to_string(os_pid)], stderr_to_stdout: true)
      end
    end)
  end

  defp wait_gone(os_pid, deadline) do
    cond do
      gone?(os_pid) ->
        true

      System.monotonic_time(:millisecond) > deadline ->
        false

      true ->
        Process.sleep(20)
        wait_gone(os_pid, deadline)
    end
  end

  # A zombie has gone: nothing reaps the children the BEAM inherits as the container's first process.
  defp gone?(os_pid) do
    case File.read("/proc/#{os_pid}/stat") do
      {:ok, stat} -> stat |> String.split(") ") |> List.last() |> String.starts_with?("Z")
      {:error, _} -> true
    end
  end
end
