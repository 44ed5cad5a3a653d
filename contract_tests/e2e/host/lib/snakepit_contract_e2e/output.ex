defmodule SnakepitContractE2E.Output do
  @moduledoc """
  Machine-readable result lines on stdout: `SNAKEPIT-E2E <json>`, one per event.

  Snakepit and its workers write to the same stdout; the prefix keeps the two apart.
  """

  @prefix "SNAKEPIT-E2E "

  def emit(event, fields) do
    IO.puts(@prefix <> Jason.encode!(jsonable(Map.put(fields, :event, event))))
  end

  @doc "Any term as JSON data: maps, lists and scalars as they are, anything else inspected."
  def jsonable(%{__struct__: _} = struct), do: inspect(struct, limit: 50, printable_limit: 2000)
  def jsonable(map) when is_map(map), do: Map.new(map, fn {k, v} -> {key(k), jsonable(v)} end)
  def jsonable(list) when is_list(list), do: if(List.improper?(list), do: inspect(list), else: Enum.map(list, &jsonable/1))
  def jsonable(value) when is_binary(value), do: if(String.valid?(value), do: value, else: inspect(value))
  def jsonable(value) when is_number(value) or is_boolean(value) or is_nil(value), do: value
  def jsonable(value) when is_atom(value), do: Atom.to_string(value)
  def jsonable(value), do: inspect(value, limit: 50, printable_limit: 2000)

  defp key(k) when is_binary(k), do: k
  defp key(k) when is_atom(k), do: Atom.to_string(k)
  defp key(k), do: inspect(k)
end
