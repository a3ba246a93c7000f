from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from provisioner.aws.session import Aws
from provisioner.errors import DynoformError
from provisioner.targets import LOCAL_TARGET

# No test may reach a real AWS account by accident.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)


# The shared local cloud, for every tier that needs it (hosts, e2e, build on hosts).
def local_cloud_skip_reason() -> str | None:
    from provisioner.localcloud.system import check_requirements

    try:
        check_requirements()
    except DynoformError as exc:
        return f"the local cloud cannot run here: {exc}"
    return None


@pytest.fixture(scope="session")
def local_cloud() -> Iterator[Aws]:
    """Yields an Aws for the local target; starts the cloud if needed (and stops it then)."""
    reason = local_cloud_skip_reason()
    if reason:
        pytest.skip(reason)
    from provisioner.localcloud import control

    started = control.daemon_pid() is None
    control.up()
    # scripts/test.sh's side stream runs beside the main one, which owns the shared platform.
    side_stream = bool(os.environ.get("DYNOFORM_TESTS_SIDE_STREAM"))
    was_paused = True if side_stream else pause_controller(True)
    try:
        yield Aws(LOCAL_TARGET)
    finally:
        if not was_paused and control.daemon_pid() is not None:
            pause_controller(False)  # as the user had it
        if started and control.daemon_pid() is not None:
            control.down()


def pause_controller(paused: bool) -> bool:
    """The controller on the hosts heals what tests break on purpose (a stopped dyno, a stopped
    host): it is paused for the suite, and resumed by the tests of the controller itself (on a
    platform of their own). Returns whether it was paused before."""
    from provisioner.context import Context
    from provisioner.ops import controller

    with Context.open("local") as ctx:
        before = controller.is_paused(ctx)
        if before != paused:
            controller.set_paused(ctx, paused)
        return before
