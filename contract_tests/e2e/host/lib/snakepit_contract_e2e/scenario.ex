defmodule SnakepitContractE2E.Scenario do
  @moduledoc """
  Runs one scenario file (fixtures/scenarios, schema scenario.schema.json) against real Snakepit.

  The step semantics are those of the Python runner (contract_tests/elixir/scenarios.py), which drives
  the pool emulator with the same files: a failed step tagged with a clause is reported and the
  run goes on; a failed untagged step (set-up) aborts the scenario. Every step's outcome is
  printed as a result line, with what was expected and what Snakepit did.
  """

  alias SnakepitContractE2E.{Calls, Output, Pool, Store}

  # own: the sessions the steps name. The store may hold others (a worker forwarding its own session, as
  # Snakepit's bridge does); sweeps and stats count only the scenario's, as in the Python runner.
  defstruct [:name, :pool, :observed, calls: %{}, pending: %{}, stopped: [], spawned: [], running: false,
             own: MapSet.new(), others_expired: 0, stats_at_start: %{}]

  @call_timeout_ms 30_000

  def run(scenario) do
    name = scenario["name"]
    Output.emit("scenario_start", %{scenario: name, clauses: scenario["clauses"], version: snakepit_version()})
    own = for step <- scenario["steps"], Map.has_key?(step, "session"), into: MapSet.new(), do: step["session"]
    state = %__MODULE__{name: name, pool: scenario["pool"], own: own}

    {status, detail, state} =
      case Pool.start(scenario["pool"]) do
        :ok ->
          state = %{state | running: true, stats_at_start: Store.stats()}
          steps(state, Enum.with_index(scenario["steps"], 1))

        {:error, why} -> {"aborted", %{index: 0, reason: why}, state}
      end

    if state.running, do: Pool.stop()
    Application.stop(:snakepit)
    Output.emit("scenario_end", Map.merge(%{scenario: name, status: status}, detail))
  end

  def snakepit_version, do: to_string(Application.spec(:snakepit, :vsn))

  defp steps(state, []), do: {"completed", %{}, state}

  defp steps(state, [{step, index} | rest]) do
    {state, failure} =
      try do
        apply_op(step["op"], step, state)
      rescue
        error -> {state, {:error, Exception.format(:error, error, __STACKTRACE__)}}
      catch
        kind, reason -> {state, {:error, Exception.format(kind, reason, __STACKTRACE__)}}
      end

    base = %{scenario: state.name, index: index, op: step["op"], id: step["id"], clause: step["clause"],
             observed: state.observed}
    state = %{state | observed: nil}

    case failure do
      nil ->
        Output.emit("step", Map.merge(base, %{passed: true}))
        steps(state, rest)

      {:error, text} ->
        Output.emit("step", Map.merge(base, %{passed: false, error: text}))
        {"aborted", %{index: index, reason: "step #{index} #{step["op"]} raised"}, state}

      {expected, actual} ->
        Output.emit("step", Map.merge(base, %{passed: false, expected: expected, actual: actual}))

        if step["clause"],
          do: steps(state, rest),
          else: {"aborted", %{index: index, reason: "set-up step #{index} #{step["op"]} failed"}, state}
    end
  end

  # -- checks ----------------------------------------------------------------------------------
  defp check(what, expected, actual) do
    if expected == actual, do: nil, else: {"#{what} = #{show(expected)}", "#{what} = #{show(actual)}"}
  end

  defp first_failure(checks), do: Enum.find(checks, & &1)

  defp expect_map(step, found, default \\ fn _ -> nil end) do
    step
    |> expectation()
    |> Enum.map(fn {key, value} -> check(key, value, Map.get(found, key, default.(key))) end)
    |> first_failure()
  end

  defp show(value), do: inspect(value, limit: 20, printable_limit: 500)

  # -- session store ---------------------------------------------------------------------------
  defp others_present(state), do: MapSet.difference(MapSet.new(Store.list()), state.own)

  defp apply_op("create_session", step, state) do
    found = Store.create(step["session"], step["metadata"], state.pool["session_ttl_s"])
    {state, expect_map(step, found)}
  end

  defp apply_op("get_session", step, state) do
    expect = expectation(step)
    session = Store.get(step["session"])

    checks = [
      Map.has_key?(expect, "exists") && check("exists", expect["exists"], match?({:ok, _}, session)),
      Map.has_key?(expect, "metadata") &&
        check("metadata", expect["metadata"], with({:ok, s} <- session, do: s.metadata, else: (_ -> nil)))
    ]

    {state, first_failure(checks)}
  end

  defp apply_op("update_metadata", step, state) do
    case Store.update_metadata(step["session"], step["metadata"]) do
      {:ok, _} -> {state, nil}
      other -> {state, {"metadata updated", "update_session returned #{show(other)}"}}
    end
  end

  defp apply_op("delete_session", step, state) do
    {state, expect_map(step, %{"ok" => Store.delete(step["session"]) == :ok})}
  end

  defp apply_op("store_program", step, state) do
    program_result(state, step, Store.program(:store_program, [step["session"], step["program"], step["data"]]))
  end

  defp apply_op("store_global_program", step, state) do
    program_result(state, step, Store.program(:store_global_program, [step["program"], step["data"]]))
  end

  defp apply_op("get_program", step, state) do
    program_found(state, step, Store.program(:get_program, [step["session"], step["program"]]))
  end

  defp apply_op("get_global_program", step, state) do
    program_found(state, step, Store.program(:get_global_program, [step["program"]]))
  end

  # What the Pool does after a checkout: record the session's worker (creating the session if needed).
  defp apply_op("store_worker_session", step, state) do
    case Snakepit.Bridge.SessionStore.store_worker_session(step["session"], step["worker_id"]) do
      :ok -> {state, nil}
      other -> {state, {"store_worker_session returns :ok", show(other)}}
    end
  end

  defp apply_op("advance_clock", step, state), do: {state, Store.advance_clock(step["seconds"]) && nil}

  # At 0.6.1-0.6.2 nothing beats a forwarded `default_session`: a TTL jump expires it with the scenario's own.
  defp apply_op("sweep", step, state) do
    others = others_present(state)
    expired = Store.sweep()
    others_expired = MapSet.size(MapSet.difference(others, others_present(state)))
    state = %{state | others_expired: state.others_expired + others_expired}
    {state, expect_map(step, %{"expired" => expired - others_expired})}
  end

  # The store's counters since the pool started, less what sessions the scenario does not own did.
  defp apply_op("stats", step, state) do
    others = others_present(state)
    current = Store.stats()

    stats =
      current
      |> Map.new(fn
        {key, value} when is_integer(value) -> {key, value - Map.get(state.stats_at_start, key, 0)}
        other -> other
      end)
      |> Map.update!(:sessions_expired, &(&1 - state.others_expired))
      |> Map.put(:current_sessions, current[:current_sessions] - MapSet.size(others))

    failure =
      step
      |> expectation()
      |> Enum.map(fn {key, value} -> check("stats[#{inspect(key)}]", value, Map.get(stats, String.to_atom(key))) end)
      |> first_failure()

    {state, failure}
  end

  defp apply_op("worker_heartbeat", step, state) do
    {:ok, channel} = GRPC.Stub.connect(Pool.elixir_address())

    try do
      request = %Snakepit.Bridge.HeartbeatRequest{session_id: step["session"]}
      {:ok, reply} = Snakepit.Bridge.BridgeService.Stub.heartbeat(channel, request, timeout: 10_000)
      {state, expect_map(step, %{"session_valid" => reply.session_valid})}
    after
      GRPC.Stub.disconnect(channel)
    end
  end

  # -- calls through the pool ------------------------------------------------------------------
  defp apply_op("execute", step, state) do
    outcome = call(step)
    state = remember(%{state | observed: describe(outcome)}, step, outcome)
    {state, judge(step, outcome, state)}
  end

  defp apply_op("execute_async", step, state) do
    mark = Calls.mark()
    task = Task.async(fn -> call(step, mark) end)
    # Give the call time to reach its worker, so the next step sees that worker busy.
    deadline = System.monotonic_time(:millisecond) + 2_000

    Stream.repeatedly(fn -> Process.sleep(10) end)
    |> Enum.find(fn _ ->
      Calls.served_by(mark, step["tool"], call_args(step)) != nil or System.monotonic_time(:millisecond) > deadline
    end)

    {%{state | pending: Map.put(state.pending, step["id"], task)}, nil}
  end

  defp apply_op("await", step, state) do
    {task, pending} = Map.pop!(state.pending, step["of"])
    outcome = Task.await(task, 60_000)
    state = %{state | pending: pending, calls: Map.put(state.calls, step["of"], outcome), observed: describe(outcome)}
    {state, judge(step, outcome, state)}
  end

  defp apply_op("wait_idle", _step, state) do
    case Pool.wait_idle(state.pool["size"], @call_timeout_ms) do
      :ok -> {state, nil}
      {:error, why} -> {state, {"every worker ready and free within #{@call_timeout_ms} ms", why}}
    end
  end

  defp apply_op("cleanup_session_on_workers", step, state) do
    request = %Snakepit.Bridge.CleanupSessionRequest{session_id: step["session"]}

    answers =
      for {worker_id, channel} <- Pool.channels() do
        answer =
          case Snakepit.Bridge.BridgeService.Stub.cleanup_session(channel, request, timeout: 10_000) do
            {:ok, %{success: true}} -> "success=true"
            other -> "#{worker_id}: #{show(other)}"
          end

        answer
      end

    wanted = step |> expectation() |> Map.get("ok", true)
    failed = Enum.reject(answers, &(&1 == "success=true"))

    failure =
      if wanted and failed != [],
        do: {"CleanupSession succeeds on every worker", Enum.join(failed, "; ")},
        else: nil

    {state, failure}
  end

  defp apply_op("crash_worker", step, state) do
    %{os_pid: os_pid} = Map.fetch!(state.calls, step["of"])
    Pool.crash(os_pid)

    if Map.get(step, "wait_restarted", true) do
      case Pool.wait_restarted(state.pool["size"], os_pid, @call_timeout_ms) do
        :ok -> {state, nil}
        {:error, why} -> {state, {"the crashed worker is replaced by a new process", why}}
      end
    else
      {state, nil}
    end
  end

  defp apply_op("stop_pool", _step, state) do
    stopped = Pool.stop()
    {%{state | stopped: stopped, running: false}, nil}
  end

  defp apply_op("leftovers", step, state) do
    expect = expectation(step)

    checks = [
      expect["no_worker_process"] &&
        check("worker processes alive", [], for(w <- state.stopped, running?(w.os_pid), do: w.os_pid)),
      expect["no_spawned_child"] &&
        check("spawned child processes alive", [], Enum.filter(state.spawned, &running?/1)),
      expect["no_ready_file"] &&
        check("ready files left", [], for(w <- state.stopped, w.ready_file, File.exists?(w.ready_file), do: w.ready_file))
    ]

    {state, first_failure(checks)}
  end

  defp apply_op(op, _step, state), do: {state, {:error, "unknown op #{inspect(op)}"}}

  # -- helpers ---------------------------------------------------------------------------------
  defp program_result(state, _step, {:unsupported, why}), do: {state, {:error, why}}
  defp program_result(state, _step, :ok), do: {state, nil}
  defp program_result(state, _step, other), do: {state, {"program stored", show(other)}}

  defp program_found(state, _step, {:unsupported, why}), do: {state, {:error, why}}

  defp program_found(state, step, result) do
    found = with({:ok, data} <- result, do: %{"data" => data}, else: (_ -> %{"missing" => true}))
    {state, expect_map(step, found, fn key -> if key == "missing", do: false end)}
  end

  defp call_args(step) do
    params = Map.get(step, "params", %{})
    # As GRPCWorker.execute_in_session does: the caller's session travels as a parameter.
    if step["in_session"], do: Map.put(params, "session_id", step["session"]), else: params
  end

  defp call(step, mark \\ Calls.mark()) do
    session = step["session"]
    args = call_args(step)
    opts = [timeout: @call_timeout_ms] ++ if(step["affinity"], do: [affinity: String.to_atom(step["affinity"])], else: [])

    result =
      try do
        cond do
          step["in_session"] -> Snakepit.execute_in_session(session, step["tool"], args, opts)
          session -> Snakepit.execute(step["tool"], args, [session_id: session] ++ opts)
          true -> Snakepit.execute(step["tool"], args, opts)
        end
      catch
        kind, reason -> {:caught, kind, reason}
      end

    %{result: result, outcome: classify(result), os_pid: Calls.served_by(mark, step["tool"], args)}
  end

  defp remember(state, step, outcome) do
    state = if step["id"], do: %{state | calls: Map.put(state.calls, step["id"], outcome)}, else: state

    case {step["tool"], outcome.outcome} do
      {"contract.spawn_child", {:ok, %{"pid" => pid}}} when is_integer(pid) -> %{state | spawned: [pid | state.spawned]}
      _ -> state
    end
  end

  @doc """
  What a call produced, in the runners' shared vocabulary: ok, an application error, or a pool error.
  0.6.0 returns bare reasons; 0.13.0 wraps every reason in `%Snakepit.Error{details: %{reason: ...}}`.
  """
  def classify({:ok, value}), do: {:ok, value}
  def classify({:error, %{__struct__: Snakepit.Error} = error}), do: reason(Map.get(error.details, :reason), error)
  def classify({:error, why}), do: reason(why, why)
  def classify(other), do: {:pool_error, "unclassified: " <> show(other)}

  defp reason(text, _) when is_binary(text), do: {:app_error, nil, text}
  defp reason(%{python_type: type} = exception, _), do: {:app_error, type, Map.get(exception, :message, show(exception))}
  defp reason(:worker_exit, _), do: {:pool_error, "worker_crashed"}
  defp reason({:worker_exit, _}, _), do: {:pool_error, "worker_crashed"}
  # 0.13.0: the GRPCWorker saw its process exit first and fails the calls it holds.
  defp reason({:grpc_server_exited, _}, _), do: {:pool_error, "worker_crashed"}
  defp reason(atom, _) when is_atom(atom) and not is_nil(atom), do: {:pool_error, Atom.to_string(atom)}
  defp reason(_, whole), do: {:pool_error, "unclassified: " <> show(whole)}

  defp describe(%{outcome: {:ok, value}, os_pid: pid}), do: "ok from pid #{pid}: #{show(value)}"
  defp describe(%{outcome: {:app_error, _, raw}, os_pid: pid}), do: "error from pid #{pid}: #{show(raw)}"
  defp describe(%{outcome: {:pool_error, kind}, result: result}), do: "pool error #{kind} (#{show(result)})"

  # The kit hands over each step's expectation already resolved for the release under test.
  defp expectation(step), do: Map.get(step, "expect", %{})

  defp judge(step, outcome, state) do
    expect = expectation(step)

    wanted = expect["pool_error"]

    case outcome.outcome do
      # A list means any one of these: Snakepit races between outcomes.
      {:pool_error, kind} when is_list(wanted) ->
        if kind in wanted, do: nil, else: {"pool error in #{show(wanted)}", "pool error = #{show(kind)}"}

      {:pool_error, kind} ->
        check("pool error", expect["pool_error"], kind)

      _ when is_map_key(expect, "pool_error") ->
        check("pool error", expect["pool_error"], nil) |> with_detail(describe(outcome))

      _ ->
        judge_reply(expect, outcome, state)
    end
  end

  defp with_detail(nil, _), do: nil
  defp with_detail({expected, actual}, detail), do: {expected, actual <> " (#{detail})"}

  defp judge_reply(expect, outcome, state) do
    {ok?, value, error} =
      case outcome.outcome do
        {:ok, value} -> {true, value, nil}
        {:app_error, type, raw} -> {false, nil, {type, raw}}
      end

    checks = [
      Map.has_key?(expect, "ok") && expect["ok"] != ok? &&
        {if(expect["ok"], do: "ok", else: "an application error"), describe(outcome)},
      Map.has_key?(expect, "result") && check("result", expect["result"], value),
      Enum.find_value(Map.get(expect, "result_fields", %{}), fn {key, wanted} ->
        check("result[#{inspect(key)}]", wanted, if(is_map(value), do: Map.get(value, key)))
      end),
      Map.has_key?(expect, "error_type") && error_type_failure(expect["error_type"], error, outcome),
      routing_failure(expect, outcome, state)
    ]

    first_failure(checks)
  end

  # 0.6 errors are plain text: the type has to appear in it; 0.13 errors carry it as a field.
  defp error_type_failure(wanted, {nil, raw}, outcome) do
    if String.contains?(raw, wanted), do: nil, else: {"error of type #{wanted}", describe(outcome)}
  end

  defp error_type_failure(wanted, {type, _}, outcome) do
    if type == wanted, do: nil, else: {"error of type #{wanted}", describe(outcome)}
  end

  defp error_type_failure(wanted, nil, outcome), do: {"error of type #{wanted}", describe(outcome)}

  # Compared by OS process: a restarted worker keeps its slot's id but none of its state.
  defp routing_failure(expect, outcome, state) do
    [{"same_worker_as", true}, {"different_worker_than", false}]
    |> Enum.find_value(fn {key, same?} ->
      with other_id when is_binary(other_id) <- expect[key],
           other <- Map.fetch!(state.calls, other_id),
           false <- (outcome.os_pid == other.os_pid and outcome.os_pid != nil) == same? do
        relation = if same?, do: "the same worker process as", else: "another worker process than"
        {"#{relation} step #{inspect(other_id)} (pid #{other.os_pid})", "served by pid #{inspect(outcome.os_pid)}"}
      else
        _ -> nil
      end
    end)
  end

  defp running?(os_pid) do
    case File.read("/proc/#{os_pid}/stat") do
      {:ok, stat} -> stat |> String.split(" ") |> Enum.at(2) != "Z"
      _ -> false
    end
  end
end
