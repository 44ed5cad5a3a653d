defmodule SnakepitContractE2E.MixProject do
  @moduledoc """
  Host project of the live E2E tier: real Snakepit driving the worker under test.

  Snakepit comes from Hex at `SNAKEPIT_VERSION` by default. When `SNAKEPIT_SOURCES_DIR`
  names a directory with `snakepit/` and `deps/<app>/` (docs/e2e.md), every dependency is a
  path dependency instead, so the project builds with no package registry at all.
  """
  use Mix.Project

  def project do
    [
      app: :snakepit_contract_e2e,
      version: "0.1.0",
      elixir: "~> 1.18",
      start_permanent: false,
      deps: deps()
    ]
  end

  def application, do: [extra_applications: [:logger]]

  # Snakepit is started by the scenario runner, once per scenario, with that scenario's pool.
  defp deps do
    case sources_dir() do
      nil -> [{:snakepit, "== " <> snakepit_version(), runtime: false}]
      dir -> deps_from_sources(dir)
    end
  end

  defp snakepit_version, do: System.get_env("SNAKEPIT_VERSION") || "0.6.0"

  defp sources_dir do
    dir = System.get_env("SNAKEPIT_SOURCES_DIR")
    if dir && File.exists?(Path.join([dir, "snakepit", "mix.exs"])), do: dir
  end

  # Every directory under deps/ overrides whatever Snakepit's tree asks for; a package with a mix.exs
  # builds with Mix, erlang.mk and rebar packages with rebar3 (Debian's). hex/ is Hex's source, not a dep.
  defp deps_from_sources(dir) do
    deps_dir = Path.join(dir, "deps")

    from_deps =
      for name <- File.ls!(deps_dir) |> Enum.sort(), name != "hex", File.dir?(Path.join(deps_dir, name)) do
        path = Path.join(deps_dir, name)
        mix? = File.exists?(Path.join(path, "mix.exs"))
        opts = [path: path, override: true] ++ if(mix?, do: [], else: [manager: :rebar3])
        {String.to_atom(name), opts}
      end

    [{:snakepit, path: Path.join(dir, "snakepit"), override: true, runtime: false} | from_deps]
  end
end
