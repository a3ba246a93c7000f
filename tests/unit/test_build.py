"""Pure parts of the build: Procfile and bin/release parsing, process-type merge, slug rules,
and the argv the deploy runs on a build host."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioner.build import (
    MAX_SLUG_BYTES,
    build_disk_bytes,
    build_layout,
    build_unit_argv,
    merge_process_types,
    neutralise,
    parse_build_result,
    parse_procfile,
    parse_release_yaml,
    runner_argv,
)
from provisioner.build.runner import (
    BuildError,
    check_slug_size,
    slug_entry_mode,
    split_release_command,
)
from provisioner.errors import DynoformError, ValidationError
from provisioner.model.procfile import parse_procfile as model_parse_procfile
from provisioner.plan.units import app_user

# --- bin/release output ---------------------------------------------------------------------


def test_release_yaml_heroku_shape():
    text = (
        "---\n"
        "addons: []\n"
        "config_vars:\n"
        "  LANG: en_US.UTF-8\n"
        "default_process_types:\n"
        "  web: npm start\n"
        "  worker: 'node worker.js --name ''x'''\n"
        '  clock: "bin/clock \\"now\\""\n'
    )
    parsed = parse_release_yaml(text)
    assert parsed["addons"] == []
    assert parsed["config_vars"] == {"LANG": "en_US.UTF-8"}
    assert parsed["default_process_types"] == {
        "web": "npm start",
        "worker": "node worker.js --name 'x'",
        "clock": 'bin/clock "now"',
    }


def test_release_yaml_empty_mapping_and_comments():
    parsed = parse_release_yaml("--- # comment\n# more\ndefault_process_types: {}\n")
    assert parsed == {"default_process_types": {}}


def test_release_yaml_list_items():
    assert parse_release_yaml("addons:\n  - heroku-postgresql\n") == {
        "addons": ["heroku-postgresql"]
    }


def test_release_yaml_command_with_colon_and_dollar():
    parsed = parse_release_yaml(
        "default_process_types:\n  web: gunicorn -b 0.0.0.0:$PORT app:app\n"
    )
    assert parsed["default_process_types"] == {"web": "gunicorn -b 0.0.0.0:$PORT app:app"}


@pytest.mark.parametrize(
    "text",
    [
        "default_process_types: {web: x}\n",
        "  web: orphan\n",
        "just words\n",
        "a: []\nb:\n  - x\n  y: z\n",
    ],
)
def test_release_yaml_rejects_what_it_cannot_read(text: str):
    with pytest.raises(BuildError) as info:
        parse_release_yaml(text)
    assert info.value.stage == "release"


# --- Procfile ----------------------------------------------------------------------------------


def test_procfile_order_and_comments():
    text = "# comment\nweb: gunicorn app:app\n\nworker:python w.py\r\nrelease: python migrate.py\n"
    assert parse_procfile(text) == {
        "web": "gunicorn app:app",
        "worker": "python w.py",
        "release": "python migrate.py",
    }


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("web gunicorn\n", "line 1"),
        ("web: a\n\nweb: b\n", "line 3: process type 'web' is defined twice (first on line 1)"),
        ("web: a\nrun: b\n", "line 2: process type 'run' is reserved for one-off dynos"),
        ("web:\n", "has no command"),
        ("we b: x\n", "expected 'type: command'"),
    ],
)
def test_procfile_errors_name_the_line(text: str, needle: str):
    with pytest.raises(BuildError) as info:
        parse_procfile(text)
    assert needle in info.value.message
    assert info.value.stage == "procfile"


@given(st.text(alphabet=st.sampled_from(list("ab_-:# \t\nw1$run")), max_size=40))
def test_runner_procfile_agrees_with_the_model(text: str):
    """The runner carries its own copy of the Procfile rules (it is stdlib-only on hosts)."""
    try:
        expected: dict[str, str] | None = model_parse_procfile(text).processes
    except ValidationError:
        expected = None
    try:
        got: dict[str, str] | None = parse_procfile(text)
    except BuildError:
        got = None
    assert got == expected


# --- merge -------------------------------------------------------------------------------------


def test_procfile_wins_over_buildpack_defaults():
    merged = merge_process_types({"web": "npm start", "worker": "node w.js"}, {"web": "node s.js"})
    assert merged == {"web": "node s.js", "worker": "node w.js"}
    assert list(merged) == ["web", "worker"]


def test_release_entry_is_split_off():
    dynos, release = split_release_command({"web": "x", "release": "python migrate.py"})
    assert dynos == {"web": "x"}
    assert release == "python migrate.py"
    assert split_release_command({"web": "x"}) == ({"web": "x"}, None)


# --- slug rules -------------------------------------------------------------------------------


def test_slug_size_limit_names_the_size():
    check_slug_size(500 * 1024 * 1024)
    with pytest.raises(BuildError) as info:
        check_slug_size(612 * 1024 * 1024 + 1)
    assert "612.0 MB" in info.value.message and "500.0 MB" in info.value.message


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (0o100644, 0o644),
        (0o100600, 0o644),
        (0o100775, 0o755),
        (0o104755, 0o755),
        (0o40700, 0o755),
        (0o100666, 0o644),
    ],
)
def test_slug_entry_mode_is_normalised(mode: int, expected: int):
    assert slug_entry_mode(mode) == expected


# --- argv for the build host -------------------------------------------------------------------


def test_runner_argv_builtin_buildpacks():
    layout = build_layout("quiet-river-4821", "b7")
    assert runner_argv(layout, source_version="0123abcd") == [
        "/usr/bin/python3",
        "/srv/dynoform/build/runner.py",
        "--source",
        "/srv/dynoform/builds/quiet-river-4821/b7/source.tgz",
        "--app-dir",
        "/app",
        "--cache-dir",
        "/srv/dynoform/builds/quiet-river-4821/b7/cache",
        "--env-dir",
        "/srv/dynoform/builds/quiet-river-4821/b7/env",
        "--slug-out",
        "/srv/dynoform/builds/quiet-river-4821/b7/slug.tgz",
        "--result",
        "/srv/dynoform/builds/quiet-river-4821/b7/result.json",
        "--log",
        "/srv/dynoform/builds/quiet-river-4821/b7/build.log",
        "--buildpacks-dir",
        "/srv/dynoform/build/buildpacks",
        "--cache-in",
        "/srv/dynoform/cache/quiet-river-4821.tar",
        "--cache-out",
        "/srv/dynoform/builds/quiet-river-4821/b7/cache-out.tar",
        "--source-version",
        "0123abcd",
    ]


def test_runner_argv_explicit_buildpacks():
    layout = build_layout("myapp", "b1")
    argv = runner_argv(
        layout, ["/srv/dynoform/builds/myapp/b1/bp/0", "/srv/dynoform/build/buildpacks/python"]
    )
    assert "--buildpacks-dir" not in argv
    assert argv[argv.index("--buildpack") + 1] == "/srv/dynoform/builds/myapp/b1/bp/0"
    assert argv.count("--buildpack") == 2


def test_build_unit_argv_exact():
    layout = build_layout("myapp", "b1")
    argv = build_unit_argv(layout, ["/usr/bin/python3", "/srv/dynoform/build/runner.py"])
    assert argv == [
        "systemd-run",
        "--unit=dynoform-build-myapp-b1",
        "--description=dynoform build",
        "--service-type=exec",
        "--wait",
        "--pipe",
        "--collect",
        "--quiet",
        "-p", "User=dyno-myapp",
        "-p", "Group=dyno-myapp",
        "-p", "TemporaryFileSystem=/srv:ro",
        "-p", "BindReadOnlyPaths=/srv/dynoform/build",
        "-p", "BindReadOnlyPaths=-/srv/dynoform/runtimes",
        "-p", "BindReadOnlyPaths=-/srv/dynoform/cache/myapp.tar",
        "-p", "BindPaths=/srv/dynoform/builds/myapp/b1",
        "-p", "BindPaths=/srv/dynoform/builds/myapp/b1/app:/app",
        "-p", "PrivateTmp=yes",
        "-p", "BindPaths=/srv/dynoform/builds/myapp/b1/tmp:/tmp",
        "-p", "BindPaths=/srv/dynoform/builds/myapp/b1/tmp:/var/tmp",
        "-p", "BindPaths=/srv/dynoform/builds/myapp/b1/tmp:/dev/shm",
        "-p", "BindPaths=/srv/dynoform/builds/myapp/b1/tmp:/run/lock",
        "-p", "WorkingDirectory=/app",
        "-p", "MemoryMax=2G",
        "-p", "MemorySwapMax=0",
        "-p", "RuntimeMaxSec=900",
        "-p", "TasksMax=4096",
        "-p", "UMask=0077",
        "-p", "NoNewPrivileges=yes",
        "-p", "CapabilityBoundingSet=",
        "-p", "AmbientCapabilities=",
        "-p", "ProtectSystem=strict",
        "-p", "ProtectHome=yes",
        "-p", "ProtectProc=invisible",
        "-p", "PrivateDevices=yes",
        "-p", "PrivateIPC=yes",
        "-p", "ProtectKernelTunables=yes",
        "-p", "ProtectKernelModules=yes",
        "-p", "ProtectKernelLogs=yes",
        "-p", "ProtectControlGroups=yes",
        "-p", "ProtectClock=yes",
        "-p", "ProtectHostname=yes",
        "-p", "RestrictSUIDSGID=yes",
        "-p", "RestrictRealtime=yes",
        "-p", "LockPersonality=yes",
        "-p", "IPAddressDeny=169.254.169.254 fd00:ec2::254",
        "-p", "KillMode=control-group",
        "-p", "TimeoutStopSec=5",
        "-p", "Environment=HOME=/tmp LANG=C.UTF-8",
        "--",
        "/usr/bin/python3",
        "/srv/dynoform/build/runner.py",
    ]  # fmt: skip


def test_each_app_builds_as_its_own_dyno_user():
    assert build_layout("myapp", "b1").user == app_user("myapp") == "dyno-myapp"
    long = build_layout("a" * 30, "b1")
    assert long.user == app_user("a" * 30) and len(long.user) <= 31


def test_build_unit_argv_limits():
    layout = build_layout("myapp", "b1")
    argv = build_unit_argv(layout, ["true"], memory_max="512M", runtime_max_sec=60)
    assert "MemoryMax=512M" in argv and "RuntimeMaxSec=60" in argv


def test_build_disk_is_four_times_the_slug_limit_and_at_least_64_mb():
    assert build_disk_bytes() == 4 * MAX_SLUG_BYTES
    assert build_disk_bytes(100 * 1024 * 1024) == 400 * 1024 * 1024
    assert build_disk_bytes(1024 * 1024) == 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: build_layout("Bad_Name", "b1"), "app name"),
        (lambda: build_layout("myapp", "b 1"), "build id"),
        (lambda: runner_argv(build_layout("myapp", "b1"), ["/tmp/x y"]), "path"),
        (lambda: runner_argv(build_layout("myapp", "b1"), ["relative/bp"]), "path"),
        (lambda: runner_argv(build_layout("myapp", "b1"), ["/srv/../etc"]), "path"),
        (
            lambda: runner_argv(build_layout("myapp", "b1"), source_version="$(reboot)"),
            "source version",
        ),
        (lambda: build_layout("myapp", "b1").buildpack_tarball(0, "../x"), "buildpack name"),
        (
            lambda: build_unit_argv(build_layout("myapp", "b1"), ["x"], memory_max="2G -p X"),
            "memory",
        ),
    ],
)
def test_unsafe_inputs_are_refused(call, field: str):
    with pytest.raises(ValidationError) as info:
        call()
    assert field in info.value.message


# --- result ----------------------------------------------------------------------------------


def test_parse_build_result_success():
    text = json.dumps(
        {
            "version": 1,
            "ok": True,
            "sha256": "a" * 64,
            "size": 1234,
            "buildpack": "Python",
            "process_types": {"web": "gunicorn app:app"},
            "release_command": "python migrate.py",
            "duration_s": 7.3,
        }
    )
    result = parse_build_result(text)
    assert result.sha256 == "a" * 64 and result.size == 1234
    assert result.process_types == {"web": "gunicorn app:app"}
    assert result.release_command == "python migrate.py"


def test_parse_build_result_failure_carries_the_message():
    text = json.dumps(
        {"version": 1, "ok": False, "stage": "detect", "error": "No default language"}
    )
    with pytest.raises(DynoformError) as info:
        parse_build_result(text)
    assert "build failed (detect): No default language" in info.value.message


@pytest.mark.parametrize(
    "text", ["not json", "[]", json.dumps({"ok": True, "sha256": "xyz", "size": 1})]
)
def test_parse_build_result_rejects_garbage(text: str):
    with pytest.raises(DynoformError):
        parse_build_result(text)


def _ok(**fields: object) -> str:
    base: dict[str, object] = {"ok": True, "sha256": "a" * 64, "size": 10, "buildpack": "X"}
    return json.dumps({**base, **fields})


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (_ok(process_types={"web; rm -rf /": "x"}), "process type 'web; rm -rf /'"),
        (_ok(process_types={"web.1": "x"}), "process type 'web.1'"),
        (_ok(process_types={"web": ""}), "has no command"),
        (_ok(process_types={"web": ["x"]}), "web must be text"),
        (_ok(process_types=["web"]), "process_types must be a mapping"),
        (_ok(process_types={f"t{i}": "x" for i in range(101)}), "at most 100 types"),
        (_ok(process_types={"web": "x" * 9000}), "at most 8192 characters"),
        (_ok(size=MAX_SLUG_BYTES + 1), "size must be"),
        (_ok(size="10"), "size must be"),
        (_ok(size=True), "size must be"),
        (_ok(release_command=7), "release_command must be text"),
        (_ok(buildpack="x" * 500), "buildpack must be text"),
        (_ok(sha256="A" * 64), "no valid slug sha256"),
        (_ok(sha256="a" * 63), "no valid slug sha256"),
        (json.dumps({"ok": "yes"}), "build failed (?)"),
        ("[" * 100000, "unreadable result"),
    ],
)
def test_parse_build_result_treats_every_field_as_untrusted(text: str, words: str):
    with pytest.raises(DynoformError) as info:
        parse_build_result(text)
    assert words in info.value.message


def test_parse_build_result_checks_the_size_against_the_deploys_limit():
    with pytest.raises(DynoformError):
        parse_build_result(_ok(size=2048), max_slug_bytes=1024)
    assert parse_build_result(_ok(size=1024), max_slug_bytes=1024).size == 1024


def test_a_failed_builds_message_reaches_the_terminal_neutralised():
    text = json.dumps({"ok": False, "stage": "compile\x1b[2J", "error": "bad\x1b]0;pwned\x07"})
    with pytest.raises(DynoformError) as info:
        parse_build_result(text)
    assert "\x1b" not in info.value.message and "\x07" not in info.value.message
    assert info.value.message == "build failed (compile\\x1b[2J): bad\\x1b]0;pwned\\x07"


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("-----> Python app detected", "-----> Python app detected"),
        ("\x1b]0;pwned\x07title", "\\x1b]0;pwned\\x07title"),
        ("\x1b[2Jcleared", "\\x1b[2Jcleared"),
        ("8-bit CSI \x9b2J and OSC \x9d0;x\x9c", "8-bit CSI \\x9b2J and OSC \\x9d0;x\\x9c"),
        ("col1\tcol2", "col1\tcol2"),
        ("crlf line\r", "crlf line"),
        ("over\rwrite", "over\\x0dwrite"),
        ("bell\x07 nul\x00 del\x7f", "bell\\x07 nul\\x00 del\\x7f"),
        ("ünïcödé ✓", "ünïcödé ✓"),
    ],
)
def test_neutralise_makes_control_characters_visible(line: str, shown: str):
    assert neutralise(line) == shown


@given(st.text())
def test_neutralised_output_holds_no_control_character_but_tab(text: str):
    out = neutralise(text)
    assert not any(ord(c) < 0x20 and c != "\t" or 0x7F <= ord(c) <= 0x9F for c in out)


def test_parse_build_result_without_a_result_file():
    with pytest.raises(DynoformError) as info:
        parse_build_result(None, exit_status=1)
    assert "stopped without a result (exit status 1)" in info.value.message
    assert info.value.hint and "15 minutes" in info.value.hint


def test_staged_buildpacks_go_to_the_builds_own_directory():
    layout = build_layout("myapp", "b1")
    assert layout.buildpacks_in == "/srv/dynoform/builds/myapp/b1/buildpacks"
    assert layout.buildpack_tarball(1, "heroku-buildpack-python") == (
        "/srv/dynoform/builds/myapp/b1/buildpacks/1-heroku-buildpack-python.tgz"
    )


def test_runner_argv_source_from_a_url_file():
    argv = runner_argv(build_layout("myapp", "b1"), source_from_url=True)
    assert argv[2:4] == ["--source-url-file", "/srv/dynoform/builds/myapp/b1/source.url"]
    assert "--source" not in argv


# --- build output on the CLI -------------------------------------------------------------------


class _Blobs:
    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}

    def put_file(self, key: str, handle) -> None:
        self.stored[key] = handle.read()


def test_build_log_passes_every_line_on_neutralised_and_stores_a_capped_copy(monkeypatch):
    from provisioner.ops import builds

    monkeypatch.setattr(builds, "MAX_STORED_LOG_BYTES", 100)
    shown: list[str] = []
    blobs = _Blobs()
    with builds.BuildLog(shown.append) as log:
        log("\x1b]0;pwned\x07-----> hello")
        for n in range(20):
            log(f"line {n:02d}")
        log.store(blobs, "builds/a/b.log")
    assert len(shown) == 21 and shown[0] == "\\x1b]0;pwned\\x07-----> hello"
    stored = blobs.stored["builds/a/b.log"].decode()
    assert stored.startswith("\\x1b]0;pwned\\x07-----> hello\nline 00\n")
    assert stored.endswith(builds.LOG_TRUNCATED + "\n") and len(stored) < 100 + 100
    assert "line 19" not in stored


class _Channel:
    """Just enough of a paramiko channel for buildhost.stream: chunks to hand out, then exit 0."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.read_fd, self.write_fd = os.pipe()
        os.write(self.write_fd, b"x")  # always "readable" for select

    def fileno(self) -> int:
        return self.read_fd

    def set_combine_stderr(self, combine: bool) -> None: ...
    def exec_command(self, command: str) -> None: ...
    def shutdown_write(self) -> None: ...

    def exit_status_ready(self) -> bool:
        return not self.chunks

    def recv_ready(self) -> bool:
        return bool(self.chunks)

    def recv(self, size: int) -> bytes:
        return self.chunks.pop(0)

    def recv_exit_status(self) -> int:
        return 0

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


def test_stream_passes_a_huge_line_on_in_bounded_pieces():
    from types import SimpleNamespace

    from provisioner.ops.buildhost import MAX_LINE_BYTES, stream

    chunks = [b"start\n"] + [b"y" * 65536] * 40 + [b"\nend"]  # a 2.5 MB line without newline
    chan = _Channel(chunks)
    conn = SimpleNamespace(
        transport=SimpleNamespace(open_session=lambda timeout: chan),
        sudo=False,
        endpoint=SimpleNamespace(name="h"),
    )
    lines: list[str] = []
    assert stream(conn, ["true"], lines.append, 10) == 0  # type: ignore[arg-type]
    assert lines[0] == "start" and lines[-1] == "end"
    assert max(len(line) for line in lines) <= MAX_LINE_BYTES
    assert sum(len(line) for line in lines[1:-1]) == 40 * 65536
