"""Self-tests of the containers-tier bootstrap (ci/): everything that can be checked without root or a real engine.

The real dockerd, mmdebstrap and docker build run in the containers tier (tox -e containers); here dockerd and
docker are stand-in scripts on PATH, because starting the real daemon needs root and changes the machine.
"""

from __future__ import annotations

import itertools
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from ci import apt_sources, base_images, daemon, engine, packages, project_images
from ci.daemon import EngineDir, EngineUnavailable, Ownership

DEB822 = textwrap.dedent("""\
    Types: deb
    # http://snapshot.example/archive/debian/20250520T000000Z
    URIs: http://mirror.example/debian/
    Suites: bookworm bookworm-updates
    Components: main
    Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

    Types: deb
    URIs: http://mirror.example/debian-security
    Suites: bookworm-security
    Components: main
    """)


# --- the machine's Debian mirror -------------------------------------------------------------------------------


def test_deb822_entries_are_read_with_their_suites_and_components() -> None:
    main, security = apt_sources.parse_deb822(DEB822, "debian.sources")
    assert main.uris == ("http://mirror.example/debian",)
    assert main.suites == ("bookworm", "bookworm-updates")
    assert main.components == ("main",)
    assert security.suites == ("bookworm-security",)


def test_deb822_disabled_entries_and_continuation_lines() -> None:
    text = "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\n"
    text += "Types: deb\nURIs:\n http://on.example/debian\nSuites: trixie\nComponents: main contrib\n"
    (entry,) = apt_sources.parse_deb822(text, "x.sources")
    assert entry.uris == ("http://on.example/debian",)
    assert entry.components == ("main", "contrib")


def test_one_line_sources_skip_options_comments_and_source_entries() -> None:
    text = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://one.example/debian/ bookworm main # tail\n"
    text += "deb-src http://src.example/debian bookworm main\n\n"
    binary, source = apt_sources.parse_one_line(text, "sources.list")
    assert binary.uris == ("http://one.example/debian",)
    assert (binary.types, binary.suites, binary.components) == (("deb",), ("bookworm",), ("main",))
    assert source.types == ("deb-src",)
    assert apt_sources.debian_mirror([source, binary], env={}) == "http://one.example/debian"


def test_the_mirror_is_the_main_archive_not_security_or_updates() -> None:
    security, main = reversed(apt_sources.parse_deb822(DEB822, "debian.sources"))
    assert apt_sources.debian_mirror([security, main], env={}) == "http://mirror.example/debian"


def test_the_mirror_can_be_overridden_and_its_absence_is_a_clear_error() -> None:
    security = apt_sources.parse_deb822(DEB822, "debian.sources")[1]
    assert apt_sources.debian_mirror([security], env={apt_sources.MIRROR_ENV: "http://o.example/d/"}) == (
        "http://o.example/d"
    )
    with pytest.raises(apt_sources.NoMirror, match=r"debian\.sources.*SNAKEPIT_CONTRACT_DEBIAN_MIRROR"):
        apt_sources.debian_mirror([security], env={})


def test_machine_sources_reads_both_formats_in_apts_order(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://first.example/debian bookworm main\n", encoding="utf-8")
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "b.sources").write_text(DEB822, encoding="utf-8")
    (parts / "a.list").write_text("deb http://second.example/debian bookworm main\n", encoding="utf-8")
    (parts / "c.disabled").write_text("deb http://ignored.example/debian bookworm main\n", encoding="utf-8")
    uris = [source.uris[0] for source in apt_sources.machine_sources(tmp_path)]
    assert uris == [
        "http://first.example/debian",
        "http://second.example/debian",
        "http://mirror.example/debian",
        "http://mirror.example/debian-security",
    ]


# --- the daemon's state directory, arguments and ownership -----------------------------------------------------


def test_engine_dir_default_and_override() -> None:
    assert EngineDir.from_env({}).root == Path("/var/tmp/snakepit-contract-engine")
    custom = EngineDir.from_env({daemon.STATE_DIR_ENV: "/tmp/e"})
    assert (custom.socket, custom.data_root, custom.exec_root, custom.pidfile) == (
        Path("/tmp/e/docker.sock"), Path("/tmp/e/root"), Path("/tmp/e/exec"), Path("/tmp/e/dockerd.pid"),
    )  # fmt: skip
    assert custom.docker_host == "unix:///tmp/e/docker.sock"


def test_dockerd_has_no_bridge_no_iptables_and_only_its_own_paths() -> None:
    argv = daemon.dockerd_argv(EngineDir(Path("/s")), "vfs")
    assert argv[0] == "dockerd"
    for flag in ("--storage-driver=vfs", "--bridge=none", "--iptables=false", "--ip6tables=false"):
        assert flag in argv
    pairs = dict(itertools.pairwise(argv))
    assert pairs["--data-root"] == "/s/root"
    assert pairs["--exec-root"] == "/s/exec"
    assert pairs["--pidfile"] == "/s/dockerd.pid"
    assert pairs["-H"] == "unix:///s/docker.sock"


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory in front of PATH for stand-in programs."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    yield directory


@pytest.fixture
def engine_dir() -> Iterator[EngineDir]:
    """A state directory short enough for containerd's unix sockets (pytest's tmp_path may not be)."""
    root = Path(tempfile.mkdtemp(prefix="sc-engine-", dir="/tmp"))
    yield EngineDir(root / "state")
    shutil.rmtree(root)


def test_a_state_directory_too_long_for_unix_sockets_is_refused_before_anything_starts(tmp_path: Path) -> None:
    deep = EngineDir(tmp_path / ("x" * 80))
    with pytest.raises(ValueError, match=r"too long.*SNAKEPIT_CONTRACT_ENGINE_DIR"):
        daemon.start(deep)
    assert not deep.root.exists()


def _script(path: Path, body: str) -> None:
    path.write_text(body, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


# A stand-in dockerd: fails for overlay2; for vfs creates the socket and sleeps, named dockerd with dockerd's argv.
FAKE_DOCKERD = """#!/bin/bash
echo "fake dockerd $*"
case "$*" in *--storage-driver=overlay2*) echo "overlay2 is not supported here" >&2; exit 1;; esac
exec -a dockerd "PYTHON" -c "import pathlib, sys, time
pathlib.Path(sys.argv[-1].removeprefix('unix://')).touch()  # answers only once it runs under its own name
time.sleep(60)" "$@"
""".replace("PYTHON", sys.executable)
# A stand-in docker CLI: "docker version" succeeds when the socket file exists.
FAKE_DOCKER = """#!/bin/bash
[ -e "${DOCKER_HOST#unix://}" ]
"""


def test_start_falls_back_to_vfs_records_ownership_and_stop_ends_only_that_daemon(
    tmp_path: Path, fake_bin: Path, engine_dir: EngineDir
) -> None:
    _script(fake_bin / "dockerd", FAKE_DOCKERD)
    _script(fake_bin / "docker", FAKE_DOCKER)
    engine = engine_dir
    owned = daemon.start(engine, ready_timeout=20)
    try:
        assert owned.storage_driver == "vfs"
        assert daemon.read_ownership(engine) == owned
        log = engine.log.read_text(encoding="utf-8")
        assert "--storage-driver=overlay2" in log and "overlay2 is not supported here" in log
        assert daemon.is_dockerd_of(owned.pid, engine)
        assert not daemon.is_dockerd_of(owned.pid, EngineDir(tmp_path / "other"))
        assert daemon.stop(engine) is True
        assert not daemon._alive(owned.pid)
        assert not engine.ownership.exists()
        assert daemon.stop(engine) is False
    finally:
        if daemon._alive(owned.pid):
            os.kill(owned.pid, 9)


def test_a_daemon_without_the_record_is_never_stopped(fake_bin: Path, engine_dir: EngineDir) -> None:
    _script(fake_bin / "dockerd", FAKE_DOCKERD)
    _script(fake_bin / "docker", FAKE_DOCKER)
    engine = engine_dir
    owned = daemon.start(engine, ready_timeout=20)
    try:
        engine.ownership.unlink()  # as if started by hand
        assert daemon.read_ownership(engine) is None
        assert daemon.stop(engine) is False
        assert daemon._alive(owned.pid)
        # A record naming a process that is not this engine's dockerd (a reused pid) is not ownership either.
        daemon.write_ownership(engine, Ownership(os.getpid(), "overlay2", 0.0))
        assert daemon.read_ownership(engine) is None
    finally:
        os.kill(owned.pid, 9)
        while daemon._alive(owned.pid):
            pass


def test_a_dockerd_that_cannot_start_is_reported_with_every_driver_tried(fake_bin: Path, engine_dir: EngineDir) -> None:
    _script(fake_bin / "dockerd", '#!/bin/sh\necho "failed to mount overlay: operation not permitted ($1)"\nexit 1\n')
    engine = engine_dir
    with pytest.raises(EngineUnavailable) as failure:
        daemon.start(engine, ready_timeout=20)
    message = str(failure.value)
    assert "overlay2: exit 1" in message and "vfs: exit 1" in message
    assert "operation not permitted (--storage-driver=vfs)" in message
    assert not engine.ownership.exists()


def test_mounts_under_lists_only_that_tree(tmp_path: Path) -> None:
    table = tmp_path / "mounts"
    table.write_text(
        "overlay / overlay rw 0 0\n"
        "nsfs /s/exec/netns/default nsfs rw 0 0\n"
        "tmpfs /s-other/x tmpfs rw 0 0\n",
        encoding="utf-8",
    )
    assert daemon.mounts_under(Path("/s"), table) == ["/s/exec/netns/default"]


# --- installing the packages ------------------------------------------------------------------------------------


def test_missing_packages_are_named_once() -> None:
    assert packages.missing_packages(lambda program: None) == ["docker.io", "mmdebstrap"]
    assert packages.missing_packages(lambda program: None if program == "mmdebstrap" else "/x") == ["mmdebstrap"]
    assert packages.missing_packages(lambda program: "/usr/bin/" + program) == []


def test_install_denies_service_starts_during_the_install_only(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    seen: list[tuple[list[str], int]] = []

    def record(command: Sequence[str], env: Mapping[str, str]) -> None:
        assert env["DEBIAN_FRONTEND"] == "noninteractive"
        denied = subprocess.run([str(policy)], check=False).returncode
        seen.append((list(command), denied))

    packages.install(["docker.io", "mmdebstrap"], policy=policy, run=record)
    assert seen == [
        (["apt-get", "update", "-qq"], 101),
        (["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker.io", "mmdebstrap"], 101),
    ]
    assert not policy.exists()


def test_install_removes_its_policy_after_a_failure_and_keeps_a_policy_it_did_not_write(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"

    def fail(command: Sequence[str], env: Mapping[str, str]) -> None:
        raise subprocess.CalledProcessError(100, list(command))

    with pytest.raises(subprocess.CalledProcessError):
        packages.install(["docker.io"], policy=policy, run=fail)
    assert not policy.exists()
    policy.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    packages.install(["docker.io"], policy=policy, run=lambda command, env: None)
    assert policy.read_text(encoding="utf-8") == "#!/bin/sh\nexit 0\n"


# --- base images --------------------------------------------------------------------------------------------------


def test_mmdebstrap_makes_a_small_merged_usr_tarball_from_the_given_mirror() -> None:
    argv = base_images.mmdebstrap_argv("trixie", "http://m.example/debian", Path("/c/t.tar"))
    assert argv[:5] == ["mmdebstrap", "--mode=root", "--variant=minbase", "--format=tar",
                        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr"]  # fmt: skip
    assert argv[-3:] == ["trixie", "/c/t.tar", "deb http://m.example/debian trixie main"]
    assert f"--customize-hook=upload {base_images.APT_DOCKER_CLEAN} /etc/apt/apt.conf.d/docker-clean" in argv
    assert "--dpkgopt=path-exclude=/usr/share/doc/*" in argv
    assert 'Dir::Cache::pkgcache "";' in base_images.APT_DOCKER_CLEAN.read_text(encoding="utf-8")


def test_the_cached_tarball_is_keyed_by_its_recipe(tmp_path: Path) -> None:
    one = base_images.BaseImage("bookworm", "http://a.example/debian", tmp_path)
    same = base_images.BaseImage("bookworm", "http://a.example/debian", tmp_path)
    other_mirror = base_images.BaseImage("bookworm", "http://b.example/debian", tmp_path)
    other_suite = base_images.BaseImage("trixie", "http://a.example/debian", tmp_path)
    assert one.tarball == same.tarball
    assert len({one.recipe, other_mirror.recipe, other_suite.recipe}) == 3
    assert one.tarball.parent == tmp_path / "rootfs"
    assert one.tarball.name == f"bookworm-{one.recipe}.tar"
    assert one.name == "snakepit-contract/base:bookworm"


def test_cache_dir_default_and_override() -> None:
    assert base_images.cache_dir({}) == Path("/var/cache/snakepit-contract")
    assert base_images.cache_dir({base_images.CACHE_DIR_ENV: "/tmp/c"}) == Path("/tmp/c")


# --- project images -----------------------------------------------------------------------------------------------


def test_runtime_requirements_come_from_pyproject(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\nversion = "1"\n'
        'dependencies = ["grpcio>=1.85.1", "Protobuf >= 7.35.1", "pytest>=8.0", "grpcio-tools==1"]\n',
        encoding="utf-8",
    )
    assert project_images.runtime_requirements(["grpcio", "protobuf"], pyproject) == [
        "grpcio>=1.85.1", "Protobuf >= 7.35.1",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="typing-extensions"):
        project_images.runtime_requirements(["typing_extensions"], pyproject)


def test_the_reference_worker_image_gets_the_projects_own_pins() -> None:
    assert project_images.runtime_requirements(project_images.REFERENCE_WORKER.requirements) == [
        "grpcio>=1.85.1", "protobuf>=7.35.1",
    ]  # fmt: skip


def test_wheels_are_chosen_for_the_images_python_and_glibc() -> None:
    platforms = project_images.wheel_platforms((2, 36), "x86_64")
    assert platforms[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_17_x86_64" in platforms and platforms[-1] == "manylinux2014_x86_64"
    assert "manylinux_2_37_x86_64" not in platforms
    argv = project_images.pip_download_argv(project_images.REFERENCE_WORKER, Path("/w"), ["grpcio>=1"], "aarch64")
    assert argv[1:4] == ["-m", "pip", "download"]
    for pair in (["--python-version", "3.11"], ["--abi", "cp311"], ["--dest", "/w"], ["--implementation", "cp"]):
        assert any(argv[i : i + 2] == pair for i in range(len(argv)))
    assert "--only-binary=:all:" in argv
    assert "manylinux_2_36_aarch64" in argv
    assert argv[-2:] == ["pip", "grpcio>=1"]


def test_the_build_context_copies_no_caches_or_reports() -> None:
    ignored = project_images.NOT_SOURCE
    for name in (".git", ".tox", "build", "__pycache__", "conformance-report", "node_modules"):
        assert name in ignored


# --- the command line ---------------------------------------------------------------------------------------------


def test_build_without_an_engine_is_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(daemon.STATE_DIR_ENV, str(tmp_path / "state"))
    assert engine.main(["build"]) == engine.NOT_RUN
    assert "NOT-RUN: no Docker engine can run on this machine" in capsys.readouterr().err


def test_up_where_dockerd_cannot_start_is_not_run_and_leaves_no_record(
    fake_bin: Path, engine_dir: EngineDir, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for program in ("docker", "mmdebstrap"):
        _script(fake_bin / program, "#!/bin/sh\nexit 1\n")
    _script(fake_bin / "dockerd", "#!/bin/sh\necho 'cannot start: no cgroups'\nexit 1\n")
    state = engine_dir.root
    monkeypatch.setenv(daemon.STATE_DIR_ENV, str(state))
    assert engine.main(["up", "--no-images"]) == engine.NOT_RUN
    err = capsys.readouterr().err
    assert "NOT-RUN: no Docker engine can run on this machine" in err
    assert "cannot start: no cgroups" in err or "needs root" in err
    assert not (state / "started-by-bootstrap.json").exists()


@pytest.mark.parametrize("argv", [["run", "--"], ["nonsense"], []])
def test_usage_errors_exit_3_like_the_kits_cli(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        engine.main(argv)
    assert usage.value.code == 3


@pytest.mark.parametrize("record", [None, "adopted\n"])
def test_down_with_a_session_that_started_nothing_touches_nothing(
    record: str | None, tmp_path: Path, fake_bin: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _script(fake_bin / "docker", f"#!/bin/sh\necho called >> {tmp_path}/docker-calls\n")
    monkeypatch.setenv(daemon.STATE_DIR_ENV, str(tmp_path / "state"))
    session = tmp_path / "session"
    if record is not None:
        session.write_text(record, encoding="utf-8")
    assert engine.main(["down", "--session", str(session), "--wipe"]) == 0
    assert "left the engine alone" in capsys.readouterr().err
    assert not (tmp_path / "docker-calls").exists()
    assert not session.exists()


def test_a_real_dockerd_falls_back_to_vfs_then_stops_and_leaves_nothing(engine_dir: EngineDir) -> None:
    """The real daemon (root only): an unusable storage driver falls through to the next, as overlay2 would."""
    problem = "needs root" if os.geteuid() != 0 else "needs dockerd (docker.io)" if not shutil.which("dockerd") else ""
    if problem and os.environ.get("SNAKEPIT_CONTRACT_REQUIRE_ENGINE") == "1":
        pytest.fail(f"a real dockerd {problem}")
    if problem:
        pytest.skip(f"a real dockerd {problem}")
    real = engine_dir
    try:
        owned = daemon.start(real, drivers=("no-such-driver", "vfs"))
        assert owned.storage_driver == "vfs"
        assert daemon.engine_answers(real)
        assert "no-such-driver" in real.log.read_text(encoding="utf-8")
    finally:
        assert daemon.stop(real)
        daemon.wipe(real)
    assert not real.root.exists()
    assert not daemon._alive(owned.pid)


def test_a_dockerd_that_runs_but_does_not_answer_is_neither_replaced_nor_wiped(
    fake_bin: Path, engine_dir: EngineDir, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for program in ("docker", "dockerd", "mmdebstrap"):
        _script(fake_bin / program, "#!/bin/sh\nexit 1\n")
    engine_dir.root.mkdir(parents=True)
    argv = ["dockerd", "-c", "import time; time.sleep(60)", "-H", engine_dir.docker_host]
    hung = subprocess.Popen(argv, executable=sys.executable)
    try:
        engine_dir.pidfile.write_text(f"{hung.pid}\n", encoding="utf-8")
        deadline = time.monotonic() + 10  # /proc/PID/cmdline is empty for a moment after exec
        while daemon.running_pid(engine_dir) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert daemon.running_pid(engine_dir) == hung.pid
        with pytest.raises(RuntimeError, match="still runs"):
            daemon.wipe(engine_dir)
        monkeypatch.setenv(daemon.STATE_DIR_ENV, str(engine_dir.root))
        assert engine.main(["up", "--no-images"]) == engine.NOT_RUN
        assert f"dockerd pid {hung.pid} runs on {engine_dir.root} but does not answer" in capsys.readouterr().err
        assert engine_dir.pidfile.exists() and hung.poll() is None
    finally:
        hung.kill()
        hung.wait()
