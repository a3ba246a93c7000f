"""Drifted dyno units: the check's output read back, and the exact commands hosts get."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from provisioner.errors import DynoformError, ValidationError
from provisioner.ops.drift import check_units, restore_units
from provisioner.plan.drift import UnitDrift, parse_unit_drift
from provisioner.remote.ssh import Result
from provisioner.render import host_program

WEB = "dyno-shop.v3.web.1.service"
WORKER = "dyno-shop.v3-2.worker.1.service"
OTHER = "dyno-my-app.v12.web.2.service"


def test_check_output_parses_to_one_drift_per_line_sorted_by_app_and_unit() -> None:
    text = f"{WEB} stopped\n{OTHER} edited\n\n{WORKER} missing\n"
    assert parse_unit_drift(text, "i-1") == [
        UnitDrift("i-1", OTHER, "my-app", "edited"),
        UnitDrift("i-1", WORKER, "shop", "missing"),
        UnitDrift("i-1", WEB, "shop", "stopped"),
    ]
    assert parse_unit_drift("", "i-1") == []


@pytest.mark.parametrize(
    "line", [f"{WEB} gone", f"{WEB}", "sshd.service stopped", f"{WEB} stopped extra"]
)
def test_a_line_the_check_never_prints_is_an_error(line: str) -> None:
    with pytest.raises(DynoformError, match="unexpected line"):
        parse_unit_drift(f"{OTHER} edited\n{line}\n", "i-1")


@dataclass
class Host:
    """Records what it is sent and answers with one canned output."""

    stdout: str = ""
    sent: list[tuple[list[str], bool, float, bool]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "i-1"

    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = False,
        stdin: bytes | None = None,
        timeout: float = 120.0,
        check: bool = False,
        label: str | None = None,
    ) -> Result:
        assert stdin is None
        self.sent.append((list(argv), sudo, timeout, check))
        return Result(list(argv), 0, self.stdout, "", 0.1)

    def put(self, data: bytes, path: str, *, mode: str = "0644") -> object:
        raise AssertionError("the drift programs write nothing through put")


def test_check_units_runs_the_check_program_once_as_root() -> None:
    host = Host(f"{WEB} edited\n")
    assert check_units(host, "i-1") == [UnitDrift("i-1", WEB, "shop", "edited")]
    assert host.sent == [(["sh", "-c", host_program("check-units"), "sh"], True, 120.0, True)]


def test_restore_units_names_the_app_and_returns_the_lines_printed() -> None:
    host = Host(f"{WEB} restored (edited)\n{WORKER} failed (stopped)\n")
    assert restore_units(host, "shop") == [
        f"{WEB} restored (edited)",
        f"{WORKER} failed (stopped)",
    ]
    assert host.sent == [
        (["sh", "-c", host_program("restore-units"), "sh", "shop"], True, 300.0, True)
    ]


def test_restore_units_refuses_a_name_that_is_no_app_before_sending_anything() -> None:
    host = Host()
    with pytest.raises(ValidationError):
        restore_units(host, "shop*")
    assert host.sent == []


def _functions(program: str) -> str:
    text = host_program(program)
    return text[: text.index("\n}\n", text.index("drifts()")) + 3]


def test_check_and_restore_judge_units_with_the_same_functions() -> None:
    shared = _functions("check-units")
    assert shared.startswith("drift() {\n") and shared.count("\n}\n") == 2
    assert _functions("restore-units") == shared


def test_reference_copies_stay_root_only() -> None:
    """The copies hold no secret (config is in env files) but nobody else needs them."""
    assert "install -d -m 0700 /srv/dynoform/units" in host_program("start-units")
    assert 'install -m 0600 "/etc/systemd/system/$u"' in host_program("start-units")
