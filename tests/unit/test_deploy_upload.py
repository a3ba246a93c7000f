"""The slug's upload runs beside the release's records (ops/deploy.py): how its end is read."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from provisioner.errors import DynoformError
from provisioner.ops.deploy import _delivered, _settled


def _done(exc: BaseException | None = None) -> Future[None]:
    future: Future[None] = Future()
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)
    return future


def test_an_upload_that_succeeded_lets_the_rollout_go_on() -> None:
    _delivered(_done())
    assert _settled(_done())


def test_an_upload_refused_by_the_host_keeps_its_own_message() -> None:
    refused = DynoformError("could not upload slug.tgz from the build host: 403", "a hint")
    with pytest.raises(DynoformError) as caught:
        _delivered(_done(refused))
    assert caught.value is refused
    assert not _settled(_done(refused))


def test_any_other_failure_of_the_upload_is_one_clear_error() -> None:
    with pytest.raises(DynoformError, match="could not upload the slug from the build host: gone"):
        _delivered(_done(OSError("gone")))


def test_an_interrupted_upload_counts_as_not_delivered() -> None:
    assert not _settled(_done(KeyboardInterrupt()))
