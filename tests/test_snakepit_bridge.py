"""Calibration on Snakepit's own Python bridge: the whole suite, through our contract adapter.

Real Snakepit runs its own `priv/python/grpc_server.py` at every release, so a MUST that bridge fails is either
a defect of that release (listed in fixtures/workers/snakepit_bridge/baselines/<version>.toml, explained in
docs/snakepit-bridge.md) or a defect of the kit. A listed failure that passes now fails the run (XPASS), so the
lists cannot go stale. The bridges are not in the repository: they are looked for under SNAKEPIT_BRIDGE_DIR
(default /var/cache/snakepit-contract/bridges), `<version>/priv/python/grpc_server.py` with `<version>/venv/`,
and the run is skipped with the reason where there is none.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from contract_tests.contract.profiles import version_key
from reference_worker.tools import CATALOGUE

ADAPTER_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "workers" / "snakepit_bridge"
BASELINES = ADAPTER_DIR / "baselines"
BRIDGES = Path(os.environ.get("SNAKEPIT_BRIDGE_DIR") or "/var/cache/snakepit-contract/bridges")
# The releases judged by default: the newest. SNAKEPIT_BRIDGE_VERSIONS="all" (or "0.6.0,0.8.0") for more.
DEFAULT_VERSIONS = ("0.13.0",)
# Far more than the process and RPC clauses a bridge without the contract tools gets: never a vacuous pass.
MIN_PASSED_MUST = 45


def _versions() -> list[str]:
    known = sorted((path.stem for path in BASELINES.glob("*.toml")), key=version_key)
    wanted = os.environ.get("SNAKEPIT_BRIDGE_VERSIONS", "")
    if wanted == "all":
        return known
    return [v.strip() for v in wanted.split(",") if v.strip()] or list(DEFAULT_VERSIONS)


def _profile_args(version: str) -> list[str]:
    """Judged by exactly the rules of the bridge's own release (contract_tests/contract/releases.toml)."""
    return ["--snakepit-version", version]


def _load_adapter() -> ModuleType:
    spec = importlib.util.spec_from_file_location("contract_adapter", ADAPTER_DIR / "contract_adapter.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_adapter_implements_the_whole_catalogue() -> None:
    """Ensure the adapter offers every contract tool the reference worker does, under the same names."""
    assert tuple(_load_adapter().CATALOGUE) == CATALOGUE


def test_every_release_with_a_baseline_is_explained() -> None:
    """Ensure each expected failure cites the page that says why (and from which Snakepit source lines)."""
    page = (ADAPTER_DIR.parent.parent.parent / "docs" / "snakepit-bridge.md").read_text(encoding="utf-8")
    for baseline in BASELINES.glob("*.toml"):
        assert f"| {baseline.stem} |" in page, f"{baseline.name}: no row in the results table"
        for line in baseline.read_text(encoding="utf-8").splitlines():
            if line.startswith("reason"):
                assert "docs/snakepit-bridge.md#" in line, (baseline.name, line)
                anchor = line.split("docs/snakepit-bridge.md#", 1)[1].split()[0].rstrip('"),;.')
                assert f'<a id="{anchor}"></a>' in page, (baseline.name, anchor)


@pytest.mark.parametrize("version", _versions())
def test_suite_on_snakepits_own_bridge(version: str, tmp_path: Path) -> None:
    """Ensure the bridge of `version` with the contract adapter fails exactly the release's documented defects."""
    root = BRIDGES / version
    server, python = root / "priv" / "python" / "grpc_server.py", root / "venv" / "bin" / "python"
    if not server.is_file() or not os.access(python, os.X_OK):
        pytest.skip(f"no Snakepit {version} bridge at {root} (priv/python/grpc_server.py and venv/bin/python); "
                    "see fixtures/workers/snakepit_bridge/README.md")
    baseline = BASELINES / f"{version}.toml"
    assert baseline.is_file(), f"no expected-failure list for {version}: {baseline}"
    path = os.pathsep.join(p for p in (str(ADAPTER_DIR), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    command = f"{python} {server} --adapter contract_adapter.ContractAdapter"
    report_dir = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, "-m", "contract_tests.cli", "run", *_profile_args(version), "--level", "must",
         "--worker-cmd", command, "--baseline", str(baseline), "-n", "0", "--report-dir", str(report_dir)],
        capture_output=True, text=True, timeout=900, env=env,
    )
    document: dict[str, Any] = json.loads((report_dir / "conformance.json").read_text())
    must = document["totals"]["by_level"]["MUST"]
    assert document["worker"]["contract_tools"] == list(CATALOGUE), document["worker"]
    assert must["PASS"] >= MIN_PASSED_MUST, must
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
