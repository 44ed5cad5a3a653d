defmodule Mix.Tasks.Contract.E2e do
  @shortdoc "Run scenario files through real Snakepit and print one result line per step"
  @moduledoc """
  `mix contract.e2e SCENARIO.json...`

  Runs each scenario file through real Snakepit (a fresh application and pool per scenario)
  and prints `SNAKEPIT-E2E <json>` lines: `run_start`, then per scenario `scenario_start`,
  one `step` per step and `scenario_end`, and finally `run_end`. A run that printed no
  `run_end` did not finish, whatever the exit status says.
  """
  use Mix.Task

  alias SnakepitContractE2E.{Calls, Output, Scenario}

  @impl true
  def run(paths) do
    Mix.Task.run("app.start")
    Calls.init()
    Output.emit("run_start", %{snakepit_version: Scenario.snakepit_version(), otp: System.otp_release(),
                               elixir: System.version(), scenarios: length(paths)})

    for path <- paths, do: path |> File.read!() |> Jason.decode!() |> Scenario.run()

    Output.emit("run_end", %{scenarios: length(paths)})
  end
end
