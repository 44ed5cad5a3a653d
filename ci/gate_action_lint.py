"""Lint the composite action's steps with actionlint, which checks workflows but only the interface of an action.

action.yml's steps are replayed as the one job of a `workflow_call` workflow with the action's inputs
and outputs, so actionlint (and ShellCheck, when it is on PATH) checks every expression, action input
and `run:` script in them. Run by `tox -e lint`; exits with actionlint's status.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ACTION = Path(__file__).resolve().parent.parent / "action.yml"


def as_workflow(action: dict[str, Any]) -> dict[str, Any]:
    """The workflow that runs the composite action's steps with its inputs and outputs."""
    if action.get("runs", {}).get("using") != "composite":
        raise ValueError(f"{ACTION.name} is not a composite action")
    inputs = {name: {"type": "string", "description": spec.get("description", ""), "default": spec.get("default", "")}
              for name, spec in action.get("inputs", {}).items()}
    return {
        "name": f"{action['name']} (the steps of {ACTION.name}, for actionlint)",
        "on": {"workflow_call": {"inputs": inputs}},
        "permissions": {"contents": "read"},
        "jobs": {"composite": {
            "runs-on": "ubuntu-latest",
            "outputs": {name: spec["value"] for name, spec in action.get("outputs", {}).items()},
            "steps": action["runs"]["steps"],
        }},
    }


def main() -> int:
    """Write the replay next to nothing in the repository (a temporary file) and lint it."""
    workflow = as_workflow(yaml.safe_load(ACTION.read_text(encoding="utf-8")))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "action-steps.yml"
        # JSON is YAML; actionlint reports positions in this file, and names the step by its `name`.
        path.write_text(json.dumps(workflow, indent=2), encoding="utf-8")
        return subprocess.run(["actionlint", str(path)], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
