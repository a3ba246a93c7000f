"""The playbook engine: facts in, commands out; the shipped runner role; check and apply."""

from __future__ import annotations

import hashlib
import shlex

import pytest

from provisioner import playbook as pb
from provisioner.errors import ValidationError
from provisioner.playbook import Fact, Put

GIB = 1024**3


def sha(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


# fact parsers ----------------------------------------------------------------------------------
def test_parse_stat():
    assert pb.parse_stat(Fact(0, "missing\n")) is None
    state = pb.parse_stat(Fact(0, "directory|2755|root|systemd-journal\n"))
    assert state == pb.PathState("directory", 0o2755, "root", "systemd-journal")
    state = pb.parse_stat(Fact(0, f"regular empty file|644|root|root\n{sha(b'')}  /x\n"))
    assert state is not None and state.kind == "regular file" and state.sha256 == sha(b"")


def test_parse_installed_only_counts_ii():
    out = "curl\tii \npython3\tii \nfoo\tun \nlibc6:amd64\tii \n"
    assert pb.parse_installed(Fact(1, out)) == {"curl", "python3", "libc6"}


def test_parse_passwd_and_meminfo():
    assert pb.parse_passwd(Fact(2, "")) is None
    user = pb.parse_passwd(Fact(0, "dynoform:x:999:999::/srv/dynoform:/usr/sbin/nologin\n"))
    assert user == pb.UserState("dynoform", 999, "/srv/dynoform", "/usr/sbin/nologin")
    assert pb.parse_meminfo("MemTotal:        2048000 kB\nMemFree: 1 kB\n") == 2048000 * 1024


# steps: facts in, commands out -----------------------------------------------------------------
def test_packages_installs_only_missing():
    step = pb.Packages(("curl", "jq"))
    assert step.fact() == (
        "dpkg-query",
        "-W",
        "-f=${Package}\t${db:Status-Abbrev}\n",
        "--",
        "curl",
        "jq",
    )
    assert not step.plan(Fact(0, "curl\tii \njq\tii \n")).changed
    plan = step.plan(Fact(1, "curl\tii \n"))
    assert [shlex.join(a) for a in plan.actions if isinstance(a, tuple)] == [
        "apt-get update -q",
        "env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends jq",
    ]


def test_user_created_or_modified():
    step = pb.User("dynoform", "/srv/dynoform")
    plan = step.plan(Fact(2, ""))
    assert plan.actions == (
        (
            "useradd", "--user-group", "--home-dir", "/srv/dynoform", "--no-create-home",
            "--shell", "/usr/sbin/nologin", "--system", "dynoform",
        ),
    )  # fmt: skip
    ok = Fact(0, "dynoform:x:999:999::/srv/dynoform:/usr/sbin/nologin")
    assert not step.plan(ok).changed
    wrong = Fact(0, "dynoform:x:999:999::/home/dynoform:/bin/bash")
    assert step.plan(wrong).actions == (
        ("usermod", "--home", "/srv/dynoform", "--shell", "/usr/sbin/nologin", "dynoform"),
    )


def test_directory_create_fix_and_refuse():
    step = pb.Directory("/srv/dynoform/builds", 0o750, "dynoform", "dynoform")
    assert step.fact() == ("sh", "-c", pb._STAT, "sh", "/srv/dynoform/builds")
    assert step.plan(Fact(0, "missing")).actions == (
        (
            "install",
            "-d",
            "-m",
            "0750",
            "-o",
            "dynoform",
            "-g",
            "dynoform",
            "--",
            "/srv/dynoform/builds",
        ),
    )
    assert not step.plan(Fact(0, "directory|750|dynoform|dynoform")).changed
    plan = step.plan(Fact(0, "directory|755|root|root"))
    assert plan.actions == (
        ("chmod", "0750", "--", "/srv/dynoform/builds"),
        ("chown", "dynoform:dynoform", "--", "/srv/dynoform/builds"),
    )
    with pytest.raises(pb.PlaybookError, match="not a directory"):
        step.plan(Fact(0, "regular file|644|root|root"))


def test_file_writes_on_content_change_and_runs_after():
    reload = ("systemctl", "daemon-reload")
    step = pb.File("/etc/systemd/system/x.slice", b"[Slice]\n", after=(reload,))
    put = Put("/etc/systemd/system/x.slice", b"[Slice]\n", "0644", "root", "root")
    want = sha(b"[Slice]\n")
    assert step.plan(Fact(0, "missing")).actions == (put, reload)
    same = Fact(0, f"regular file|644|root|root\n{want}  /x\n")
    assert not step.plan(same).changed
    other = Fact(0, f"regular file|644|root|root\n{sha(b'edited')}  /x\n")
    plan = step.plan(other)
    assert plan.actions == (put, reload) and "content differs" in plan.reasons[0]
    mode_only = Fact(0, f"regular file|600|root|root\n{want}  /x\n")
    assert step.plan(mode_only).actions == (
        ("chmod", "0644", "--", "/etc/systemd/system/x.slice"),
        reload,
    )


def test_sysctl_and_unit():
    step = pb.Sysctl("net.ipv4.ip_local_port_range", "10240 65000")
    assert not step.plan(Fact(0, "10240\t65000\n")).changed
    assert step.plan(Fact(0, "32768\t60999\n")).actions == (
        ("sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=10240 65000"),
    )
    unit = pb.UnitActive("dynoform.slice")
    assert not unit.plan(Fact(0, "active\n")).changed
    assert unit.plan(Fact(3, "inactive\n")).actions == (
        ("systemctl", "start", "--", "dynoform.slice"),
    )


# roles -----------------------------------------------------------------------------------------
def test_role_validation_names_the_field():
    with pytest.raises(ValidationError, match=r"r.toml: steps\[1\].mode"):
        pb.parse_role(
            "r",
            '[[steps]]\nunit = "a.slice"\n[[steps]]\ndirectory = "/x"\nmode = "rwx"\n',
            "r.toml",
        )
    with pytest.raises(ValidationError, match=r"steps\[0\]: needs exactly one"):
        pb.parse_role("r", '[[steps]]\nfoo = "bar"\n', "r.toml")
    with pytest.raises(ValidationError, match=r"steps\[0\].colour"):
        pb.parse_role("r", '[[steps]]\nunit = "a.slice"\ncolour = 1\n', "r.toml")
    with pytest.raises(ValidationError, match="packages"):
        pb.parse_role("r", '[[steps]]\npackages = ["curl; rm -rf /"]\n', "r.toml")


def test_shipped_runner_role_renders_slice_below_host_memory():
    role, env = pb.load_role("runner")
    steps = role.steps(pb.HostFacts(memory_bytes=2 * GIB, cpus=2), env)
    names = [s.name for s in steps]
    assert "directory /app" in names and "unit dynoform.slice active" in names
    assert names.index("file /etc/systemd/system/dynoform.slice") < names.index(
        "unit dynoform.slice active"
    )
    slice_file = next(s for s in steps if s.name == "file /etc/systemd/system/dynoform.slice")
    assert isinstance(slice_file, pb.File)
    text = slice_file.content.decode()
    reserve = 512 * 1024 * 1024  # larger than 10 % of 2 GiB
    assert f"MemoryMax={2 * GIB - reserve}\n" in text
    journald = next(s for s in steps if s.name.startswith("file /etc/systemd/journald"))
    assert isinstance(journald, pb.File)
    assert b"Storage=persistent" in journald.content and b"SystemMaxUse=512M" in journald.content
    big = role.steps(pb.HostFacts(memory_bytes=64 * GIB, cpus=16), env)
    big_slice = next(s for s in big if s.name == slice_file.name)
    assert isinstance(big_slice, pb.File)
    assert f"MemoryMax={64 * GIB - 64 * GIB // 10}\n".encode() in big_slice.content


@pytest.mark.parametrize("endpoint", [None, "http://198.18.0.1:4566"])
def test_runner_role_installs_the_metadata_block_dynoform_renders(endpoint):
    from provisioner.render import api_endpoint, render_metadata_block, wall_vars

    role, env = pb.load_role("runner")
    api = api_endpoint(endpoint)
    steps = role.steps(pb.HostFacts(memory_bytes=2 * GIB, cpus=2), env, wall_vars(api))
    names = [s.name for s in steps]
    rules = next(s for s in steps if s.name == "file /etc/dynoform/metadata-block.nft")
    assert isinstance(rules, pb.File)
    assert rules.content.decode() == render_metadata_block(api)  # same uids and addresses
    assert (b"tcp dport 4566" in rules.content) == bool(endpoint)
    assert rules.after == (("/usr/sbin/nft", "-f", "/etc/dynoform/metadata-block.nft"),)
    unit = "unit dynoform-metadata-block.service active"
    assert names.index("file /etc/systemd/system/dynoform-metadata-block.service") < names.index(
        unit
    )
    # The wall is up before the slice every dyno runs in, and the slice requires it.
    assert names.index(unit) < names.index("file /etc/systemd/system/dynoform.slice")
    slice_file = next(s for s in steps if s.name == "file /etc/systemd/system/dynoform.slice")
    assert isinstance(slice_file, pb.File)
    assert b"\nRequires=dynoform-metadata-block.service\n" in slice_file.content
    assert b"\nAfter=dynoform-metadata-block.service\n" in slice_file.content
    packages = next(s for s in steps if isinstance(s, pb.Packages))
    assert "nftables" in packages.packages


# the engine against a fake host ----------------------------------------------------------------
class FakeHost:
    """A tiny host: files, directories, a user table; answers the facts the steps ask."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, int, str, str]] = {}
        self.dirs: dict[str, tuple[int, str, str]] = {}
        self.applied: list[str] = []

    def fact(self, argv: pb.Cmd) -> Fact:
        if argv[:2] == ("sh", "-c"):
            path = argv[4]
            if path in self.dirs:
                mode, owner, group = self.dirs[path]
                return Fact(0, f"directory|{mode:o}|{owner}|{group}\n")
            if path in self.files:
                content, mode, owner, group = self.files[path]
                return Fact(0, f"regular file|{mode:o}|{owner}|{group}\n{sha(content)}  {path}\n")
            return Fact(0, "missing\n")
        raise AssertionError(f"unexpected fact {argv}")

    def apply(self, action: pb.Action) -> None:
        self.applied.append(pb.describe(action))
        if isinstance(action, Put):
            self.files[action.path] = (
                action.content,
                int(action.mode, 8),
                action.owner,
                action.group,
            )
        elif action[:2] == ("install", "-d"):
            self.dirs[action[-1]] = (int(action[3], 8), action[5], action[7])


def test_apply_then_check_reports_zero_changes_and_drift_reports_one_step():
    steps: list[pb.Step] = [
        pb.Directory("/srv/dynoform"),
        pb.File("/etc/a.conf", b"a\n", after=(("true",),)),
        pb.File("/etc/b.conf", b"b\n"),
    ]
    host = FakeHost()
    first = pb.run_steps(steps, host)
    assert len(first.changes) == 3
    assert "true" in host.applied
    applied = len(host.applied)
    check = pb.run_steps(steps, host, check=True)
    assert check.changes == [] and len(host.applied) == applied
    host.files["/etc/b.conf"] = (b"edited\n", 0o644, "root", "root")
    drift = pb.run_steps(steps, host, check=True)
    assert [s.name for s in drift.changes] == ["file /etc/b.conf"]
    assert host.files["/etc/b.conf"][0] == b"edited\n"  # check changed nothing


def test_a_step_that_does_not_converge_is_an_error():
    class Stubborn(FakeHost):
        def apply(self, action: pb.Action) -> None:
            self.applied.append(pb.describe(action))

    with pytest.raises(pb.PlaybookError, match="did not converge"):
        pb.run_steps([pb.Directory("/x")], Stubborn())
