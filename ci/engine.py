"""`python -m ci.engine up|build|status|down|run`: the containers tier's Docker engine and images, from any machine.

up      install docker.io and mmdebstrap if missing, start (or adopt) the private daemon, build the images;
        prints DOCKER_HOST=unix://... on stdout (progress and timings go to stderr)
build   (re)build the base and project images on the running engine
status  the engine, its owner, the images and the caches
down    remove the project's labelled containers; stop the daemon only if the bootstrap started it
        (--wipe also deletes its state directory: images, layers, logs)
        `up --session FILE` ... `down --session FILE` pairs a teardown with the up that started the daemon
        (the containers tox env does this), so a daemon a developer started earlier survives
run     up, run COMMAND with DOCKER_HOST set, then tear down whatever this invocation started

Exit status: 0 done (or COMMAND's status), 1 error, 2 NOT-RUN (no Docker engine can run on this machine),
3 usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import NoReturn

from ci import base_images, daemon, packages, project_images
from ci.apt_sources import NoMirror, debian_mirror, machine_sources
from ci.daemon import EngineDir, EngineUnavailable

NOT_RUN = 2
SESSION_STARTED = "started\n"


def say(message: str) -> None:
    sys.stderr.write(f"[engine] {message}\n")
    sys.stderr.flush()


@contextlib.contextmanager
def timed(step: str) -> Iterator[list[str]]:
    """Print how long a step took, with whatever detail the step appends."""
    detail: list[str] = []
    began = time.monotonic()
    yield detail
    say(f"{step}: {time.monotonic() - began:.1f} s" + (f" ({'; '.join(detail)})" if detail else ""))


def ensure_packages() -> None:
    with timed("packages") as detail:
        missing = packages.missing_packages()
        if missing:
            _require_root(f"installing {', '.join(missing)}")
            packages.install(missing)
        detail.append(f"installed {', '.join(missing)}" if missing else "docker.io and mmdebstrap present")


def ensure_engine(engine: EngineDir, session: Path | None = None) -> bool:
    """Adopt a daemon answering on the engine's socket, or start one; True when this call started it.

    The session file (if any) says "started" before the daemon is started, so an interrupted start is torn down too.
    """
    with timed("engine") as detail:
        if daemon.engine_answers(engine):
            owned = daemon.read_ownership(engine)
            mine = f"started by the bootstrap, pid {owned.pid}" if owned else "not started by the bootstrap"
            detail.append(f"already running on {engine.socket}, {mine}; left running")
            if session is not None:
                session.write_text("adopted\n", encoding="utf-8")
            return False
        hung = daemon.running_pid(engine)
        if hung is not None:
            raise EngineUnavailable(f"dockerd pid {hung} runs on {engine.root} but does not answer; see {engine.log}")
        if os.geteuid() != 0:
            raise EngineUnavailable(f"no engine answers on {engine.socket} and starting dockerd needs root")
        if shutil.which("dockerd") is None:
            raise EngineUnavailable("dockerd is not installed")
        if session is not None:
            session.write_text(SESSION_STARTED, encoding="utf-8")
        owned = daemon.start(engine)
        detail.append(f"started dockerd pid {owned.pid}, storage driver {owned.storage_driver}")
        return True


def build_images(engine: EngineDir) -> None:
    """Base images for every suite in parallel (from cached tarballs when possible), then the project's images."""
    cache = base_images.cache_dir()
    with timed("base images") as overall:
        mirror = debian_mirror(machine_sources())
        overall.append(f"mirror {mirror}")

        def one(suite: str) -> None:
            with timed(f"  {base_images.image_name(suite)}") as detail:
                detail.append(base_images.ensure(base_images.BaseImage(suite, mirror, cache), engine))

        with ThreadPoolExecutor(max_workers=len(base_images.SUITES)) as pool:
            for outcome in [pool.submit(one, suite) for suite in base_images.SUITES]:
                outcome.result()
    for image in project_images.IMAGES:
        with timed(f"image {image.latest}") as detail:
            project_images.build(image, engine)
            detail.append(f"{_image_size(image.latest, engine)}, tagged also :{project_images.project_version()}")


def teardown(engine: EngineDir, wipe: bool) -> None:
    """Remove labelled containers; stop the daemon only if ours; optionally delete its state."""
    with timed("down") as detail:
        if daemon.engine_answers(engine):
            detail.append(f"removed {daemon.remove_labelled_containers(engine)} labelled containers")
        stopped = daemon.stop(engine)
        detail.append("stopped the daemon the bootstrap started" if stopped else "no daemon of ours to stop")
        if wipe and engine.root.exists():
            daemon.wipe(engine)
            detail.append(f"wiped {engine.root}")


def status(engine: EngineDir) -> None:
    answers = daemon.engine_answers(engine)
    owned = daemon.read_ownership(engine)
    owner = f"started by the bootstrap (pid {owned.pid}, {owned.storage_driver})" if owned else "not ours"
    print(f"engine      {engine.root}: " + (f"running, {owner}" if answers else "not running"))
    print(f"DOCKER_HOST={engine.docker_host}")
    if answers:
        listing = subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}", "snakepit-contract/*"],
            env=daemon.docker_env(engine), capture_output=True, text=True, check=False,
        )  # fmt: skip
        for line in listing.stdout.splitlines():
            print(f"image       {line}")
    rootfs = base_images.cache_dir() / "rootfs"
    for tarball in sorted(rootfs.glob("*.tar")) if rootfs.is_dir() else []:
        print(f"cache       {tarball} {tarball.stat().st_size / 1e6:.0f} MB")


def run(engine: EngineDir, command: Sequence[str], keep: bool) -> int:
    """Bring the engine up, run the command against it, and leave nothing this invocation started."""
    ensure_packages()
    started = ensure_engine(engine)
    try:
        build_images(engine)
        return _run_child(command, {**os.environ, "DOCKER_HOST": engine.docker_host, "DOCKER_BUILDKIT": "0"})
    finally:
        if started and not keep:
            teardown(engine, wipe=True)


def _run_child(command: Sequence[str], env: dict[str, str]) -> int:
    say(f"running: {' '.join(command)}")
    child = subprocess.Popen(list(command), env=env)

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:  # the child got the terminal's SIGINT too; let it finish its own cleanup
                continue
    finally:
        signal.signal(signal.SIGTERM, previous)


def _session_started(session: Path) -> bool:
    try:
        return session.read_text(encoding="utf-8") == SESSION_STARTED
    except FileNotFoundError:
        return False


def _image_size(name: str, engine: EngineDir) -> str:
    probe = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", name],
        env=daemon.docker_env(engine), capture_output=True, text=True, check=False,
    )  # fmt: skip
    return f"{int(probe.stdout) / 1e6:.0f} MB" if probe.returncode == 0 and probe.stdout.strip().isdigit() else "?"


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise PermissionError(f"{what} needs root")


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 3, as in the kit's own CLI (2 means NOT-RUN here)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(3, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="python -m ci.engine", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="install, start or adopt the engine, build the images")
    up.add_argument("--no-images", action="store_true", help="only the engine")
    up.add_argument("--session", type=Path, metavar="FILE", help="record there whether this call started the daemon")
    commands.add_parser("build", help="(re)build the images on the running engine")
    commands.add_parser("status", help="engine, owner, images, caches")
    down = commands.add_parser("down", help="remove labelled containers, stop the daemon if the bootstrap started it")
    down.add_argument("--wipe", action="store_true", help="also delete the engine's state directory")
    down.add_argument("--session", type=Path, metavar="FILE",
                      help="tear down only if `up --session FILE` started the daemon (then delete FILE)")
    runner = commands.add_parser("run", help="up, run COMMAND with DOCKER_HOST set, tear down what this started")
    runner.add_argument("--keep", action="store_true", help="leave a daemon this invocation started running")
    runner.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    engine = EngineDir.from_env()
    began = time.monotonic()
    try:
        if args.command == "up":
            ensure_packages()
            ensure_engine(engine, args.session)
            if not args.no_images:
                build_images(engine)
            print(f"DOCKER_HOST={engine.docker_host}")
        elif args.command == "build":
            if not daemon.engine_answers(engine):
                raise EngineUnavailable(f"no engine answers on {engine.socket}; run `python -m ci.engine up` first")
            build_images(engine)
        elif args.command == "status":
            status(engine)
        elif args.command == "down":
            if args.session is None or _session_started(args.session):
                teardown(engine, wipe=args.wipe)
            else:
                say(f"down: left the engine alone ({args.session} records no daemon started by that session)")
            if args.session is not None:
                args.session.unlink(missing_ok=True)
        else:
            command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            if not command:
                parser().error("run needs a COMMAND after --")
            return run(engine, command, keep=args.keep)
    except EngineUnavailable as unavailable:
        say(f"NOT-RUN: no Docker engine can run on this machine: {unavailable}")
        return NOT_RUN
    except (NoMirror, PermissionError, RuntimeError, ValueError, subprocess.CalledProcessError) as failure:
        say(f"error: {failure}")
        return 1
    finally:
        say(f"total: {time.monotonic() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
