"""Lint what actionlint alone cannot reach: the composite action's steps and the CI lines the docs tell users to paste.

actionlint checks workflow files, but of an action only its interface. So, in a scratch project holding
copies of action.yml and the reusable workflow, this writes (1) action.yml's steps replayed as the one job
of a `workflow_call` workflow with the action's inputs and outputs, so every expression, action input and
`run:` script in them is checked (ShellCheck too, when it is on PATH), and (2) each GitHub snippet of
README.md and docs/gate.md, its `OWNER/snakepit-contract...@REF` turned into the local action or workflow,
so a documented input that does not exist fails. Run by `tox -e lint`; exits with actionlint's status.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
WORKFLOW = ROOT / ".github" / "workflows" / "gate.yml"
DOCS = (ROOT / "README.md", ROOT / "docs" / "gate.md")
_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
_PUBLISHED = {"OWNER/snakepit-contract/.github/workflows/gate.yml@REF": "./.github/workflows/gate.yml",
              "OWNER/snakepit-contract@REF": "./"}


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


def doc_snippets(text: str) -> list[dict[str, Any]]:
    """Each YAML block that uses the published action or workflow, as a whole workflow calling the local copy."""
    found = []
    for block in _YAML_BLOCK.findall(text):
        if not any(published in block for published in _PUBLISHED):
            continue
        for published, local in _PUBLISHED.items():
            block = block.replace(published, local)
        loaded = yaml.safe_load(textwrap.dedent(block))
        if isinstance(loaded, list):  # steps to paste into a job
            loaded = {"jobs": {"gate": {"runs-on": "ubuntu-latest", "steps": loaded}}}
        # PyYAML reads a bare `on:` key as True.
        loaded["on"] = loaded.pop(True, loaded.pop("on", "push"))
        found.append(loaded)
    return found


def main() -> int:
    """Build the scratch project, lint it all with one actionlint run."""
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        workflows = project / ".github" / "workflows"
        workflows.mkdir(parents=True)
        subprocess.run(["git", "init", "-q", str(project)], check=True)  # actionlint resolves `./` in a project
        shutil.copy(ACTION, project / ACTION.name)
        shutil.copy(WORKFLOW, workflows / WORKFLOW.name)
        # JSON is YAML; actionlint reports positions in these files and names each step by its `name`.
        replay = as_workflow(yaml.safe_load(ACTION.read_text(encoding="utf-8")))
        (workflows / "action-steps.yml").write_text(json.dumps(replay, indent=2), encoding="utf-8")
        for doc in DOCS:
            snippets = doc_snippets(doc.read_text(encoding="utf-8"))
            if not snippets:
                sys.stderr.write(f"{doc.relative_to(ROOT)}: no GitHub snippet using {' or '.join(_PUBLISHED)}\n")
                return 1
            for number, snippet in enumerate(snippets, 1):
                name = f"{doc.stem}-snippet-{number}.yml"
                (workflows / name).write_text(json.dumps(snippet, indent=2), encoding="utf-8")
        return subprocess.run(["actionlint"], cwd=project, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
