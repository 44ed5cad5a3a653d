defmodule SnakepitContractE2E.Store do
  @moduledoc """
  Snakepit's SessionStore, driven through its public functions.

  Two scenario operations have no public counterpart: advancing the clock rewinds every
  stored timestamp by the same amount inside the store's own process (its ETS table is
  protected from 0.6.7 on), which is what the passing of that time looks like to it; a sweep
  sends the store the message its periodic timer sends.
  """

  alias Snakepit.Bridge.SessionStore

  def create(id, metadata, ttl) do
    opts = [metadata: metadata || %{}] ++ if(ttl, do: [ttl: ttl], else: [])

    case SessionStore.create_session(id, opts) do
      {:ok, _} -> %{"ok" => true}
      {:error, reason} -> %{"ok" => false, "error" => reason_text(reason)}
    end
  end

  def get(id) do
    case SessionStore.get_session(id) do
      {:ok, session} -> {:ok, session}
      {:error, _} -> :missing
    end
  end

  def update_metadata(id, metadata) do
    SessionStore.update_session(id, fn session -> %{session | metadata: Map.merge(session.metadata, metadata)} end)
  end

  def delete(id), do: SessionStore.delete_session(id)

  @doc "Programs exist only in Snakepit 0.6.x/0.7.x; `{:unsupported, why}` elsewhere."
  def program(fun, args) do
    if Code.ensure_loaded?(SessionStore) and function_exported?(SessionStore, fun, length(args)) do
      apply(SessionStore, fun, args)
    else
      {:unsupported, "SessionStore.#{fun}/#{length(args)} does not exist in this Snakepit version"}
    end
  end

  def advance_clock(seconds) do
    shift = round(seconds)

    :sys.replace_state(SessionStore, fn state ->
      for {id, {last, ttl, session}} <- :ets.tab2list(state.table) do
        moved = %{session | created_at: session.created_at - shift, last_accessed: session.last_accessed - shift}
        :ets.insert(state.table, {id, {last - shift, ttl, moved}})
      end

      if table = Map.get(state, :global_programs_table) do
        for {id, data, stamp} <- :ets.tab2list(table), do: :ets.insert(table, {id, data, stamp - shift})
      end

      state
    end)

    :ok
  end

  @doc "One run of the store's periodic sweep; returns how many sessions it expired."
  def sweep do
    before = stats()[:sessions_expired]
    send(Process.whereis(SessionStore), :cleanup_expired_sessions)
    stats()[:sessions_expired] - before
  end

  def stats, do: SessionStore.get_stats()

  def list, do: SessionStore.list_sessions()

  defp reason_text(reason) when is_atom(reason), do: Atom.to_string(reason)
  defp reason_text(reason), do: inspect(reason)
end
