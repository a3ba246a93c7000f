"""The shared local cloud for host tests: `local_cloud` yields an Aws for the local target.

It starts the cloud when it is not up (and stops it at the end of the session only then),
and skips with the reason when this machine cannot run it (not root, not Linux, tools missing).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from provisioner.aws.session import Aws
from provisioner.errors import DynoformError
from provisioner.targets import LOCAL_TARGET


def local_cloud_skip_reason() -> str | None:
    from provisioner.localcloud.system import check_requirements

    try:
        check_requirements()
    except DynoformError as exc:
        return f"the local cloud cannot run here: {exc}"
    return None


@pytest.fixture(scope="session")
def local_cloud() -> Iterator[Aws]:
    reason = local_cloud_skip_reason()
    if reason:
        pytest.skip(reason)
    from provisioner.localcloud import control

    started = control.daemon_pid() is None
    control.up()
    try:
        yield Aws(LOCAL_TARGET)
    finally:
        if started and control.daemon_pid() is not None:
            control.down()
