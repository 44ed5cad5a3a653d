"""Generate the Python stubs of snakepit_bridge.proto into contract_tests/protocol/proto and reference_worker/proto.

Stubs are committed so that installing the suite needs no code generator.
The kit and the reference worker each get their own copy, so that the judged
worker imports nothing of the kit and its folder can be copied alone.
`python protos/generate.py --check` regenerates into a scratch folder and
fails on any difference in either copy; tests/test_proto_stubs.py runs it.
The generator versions are pinned in pyproject.toml's `dev` extra, because
their output differs between releases, and recorded in each package's
__init__.py, so a copied folder still says what made its stubs.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.metadata
import re
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
PROTO_FILE = "snakepit_bridge.proto"
STUB_DIRS = (PROTO_DIR.parent / "contract_tests" / "protocol" / "proto",
             PROTO_DIR.parent / "reference_worker" / "proto")
_GENERATORS = ("grpcio-tools", "mypy-protobuf")

# protoc writes `import snakepit_bridge_pb2`, which only works from the output
# folder itself; the stubs live inside a package, so the import is made relative.
_ABSOLUTE_IMPORT = re.compile(r"^import snakepit_bridge_pb2 as", re.MULTILINE)


def _plugin(name: str) -> str:
    script = Path(sys.executable).parent / name
    if not script.exists():
        raise SystemExit(f"{name} not found next to {sys.executable}; install the 'dev' extra")
    return str(script)


def generate(out_dir: Path) -> None:
    """Write the stubs (.py and .pyi) and the package __init__ into out_dir."""
    from grpc_tools import protoc  # imported late: only the dev extra has it

    include = Path(protoc.__file__).parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        PROTO_FILE,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on " + PROTO_FILE)
    for stub in out_dir.glob("snakepit_bridge_pb2_grpc.py*"):
        stub.write_text(_ABSOLUTE_IMPORT.sub("from . import snakepit_bridge_pb2 as", stub.read_text()))
    (out_dir / "__init__.py").write_text(_package_init())


def _package_init() -> str:
    versions = " and ".join(f"{name} {importlib.metadata.version(name)}" for name in _GENERATORS)
    return f'"""Generated gRPC stubs for snakepit_bridge.proto by {versions} (see protos/generate.py)."""\n'


def differences(expected_dir: Path, actual_dir: Path) -> list[str]:
    """Names of files that differ, are missing or are extra in actual_dir."""
    if not actual_dir.is_dir():
        return sorted(entry.name for entry in expected_dir.iterdir() if entry.name != "__pycache__")
    cmp = filecmp.dircmp(expected_dir, actual_dir, ignore=["__pycache__"])
    _, mismatch, errors = filecmp.cmpfiles(expected_dir, actual_dir, cmp.common_files, shallow=False)
    return sorted(mismatch + errors + cmp.left_only + cmp.right_only)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Fail if the committed stubs are stale")
    args = parser.parse_args(argv)
    if not args.check:
        for stub_dir in STUB_DIRS:
            generate(stub_dir)
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / "proto"
        generate(fresh)
        stale = [
            f"{stub_dir.parent.name}/{stub_dir.name}/{name}"
            for stub_dir in STUB_DIRS
            for name in differences(fresh, stub_dir)
        ]
    if stale:
        print("stale generated stubs: " + ", ".join(stale), file=sys.stderr)
        print("run: python protos/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
