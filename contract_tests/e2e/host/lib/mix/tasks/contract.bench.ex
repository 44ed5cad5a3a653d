defmodule Mix.Tasks.Contract.Bench do
  @shortdoc "Time Snakepit.execute through real Snakepit for each worker and pool size"
  @moduledoc """
  `mix contract.bench CONFIG.json`

  CONFIG names the targets (`name`, `argv` as the adapter reads it, extra `env`), the pool sizes,
  rounds, calls, warm-up calls, concurrent callers and the timing tool with its parameters. Prints
  `SNAKEPIT-E2E <json>` lines: `run_start`, one `bench_sample` per round, target and pool size (or a
  `bench_error`, after which it stops), and `run_end`. A run that printed no `run_end` did not finish.
  """
  use Mix.Task

  alias SnakepitContractE2E.{Bench, Output, Scenario}

  @impl true
  def run([path]) do
    Mix.Task.run("app.start")
    config = path |> File.read!() |> Jason.decode!()
    Output.emit("run_start", %{snakepit_version: Scenario.snakepit_version(), otp: System.otp_release(),
                               elixir: System.version(), bench: true})
    Bench.run(config)
    Output.emit("run_end", %{})
  end
end
