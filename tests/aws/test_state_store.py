import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from provisioner.aws.state import Documents, StaleWrite
from provisioner.errors import DynoformError
from provisioner.model.release import Release
from provisioner.store import Lease, Store, now_iso


def make_release(version: int) -> Release:
    return Release(version, f"Deploy {version}", "test", now_iso(), status="succeeded")


def test_bucket_is_versioned_private_and_encrypted(aws, store):
    s3, bucket = aws.s3, store.docs.bucket
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    store.docs.put("x.json", {"a": 1})
    assert s3.head_object(Bucket=bucket, Key="x.json")["ServerSideEncryption"] == "AES256"
    assert store.docs.ensure_bucket("us-east-1") is False


def test_sixteen_concurrent_releases_get_distinct_consecutive_versions(store):
    store.create_app("busy-app")
    barrier = threading.Barrier(16)

    def create(i: int) -> int:
        barrier.wait()
        return store.create_release("busy-app", make_release, {"N": str(i)}).version

    with ThreadPoolExecutor(16) as pool:
        versions = sorted(pool.map(create, range(16)))
    assert versions == list(range(1, 17))
    assert store.release_versions("busy-app") == list(range(1, 17))
    assert all(store.release_config("busy-app", v) for v in versions)


def test_stale_update_is_refused(store):
    docs: Documents = store.docs
    etag = docs.create("doc.json", {"n": 1})
    newer = docs.update("doc.json", {"n": 2}, etag)
    with pytest.raises(StaleWrite):
        docs.update("doc.json", {"n": 3}, etag)
    with pytest.raises(StaleWrite):
        docs.create("doc.json", {"n": 4})
    assert docs.get("doc.json").data == {"n": 2}
    assert docs.get("doc.json").etag == newer


def test_lease_is_exclusive_names_holder_and_expires(store):
    store.create_app("leased")
    with store.lease("leased", "deploy", ttl=30):
        with pytest.raises(DynoformError) as info:
            with store.lease("leased", "scale"):
                pass
        assert "busy: deploy by" in str(info.value) and "since" in str(info.value)
    with store.lease("leased", "scale", ttl=30):
        pass  # released: free again


def test_expired_lease_is_taken_over(store):
    store.create_app("expiring")
    # try_acquire takes the lease without the renewing thread, as a process killed right
    # after taking it would leave it
    dead = Lease(store.docs, "expiring", "deploy", ttl=1)
    assert dead.try_acquire() is None
    with pytest.raises(DynoformError, match="busy: deploy"):
        with store.lease("expiring", "scale"):
            pass
    time.sleep(1.2)
    with store.lease("expiring", "scale", ttl=30) as second:
        assert store.docs.get("leases/expiring.json").data["holder"] == second.holder


def test_wait_for_lease(store):
    store.create_app("waiting")
    held = store.lease("waiting", "deploy", ttl=30)
    held.__enter__()
    threading.Timer(1.0, lambda: held.__exit__(None, None, None)).start()
    start = time.monotonic()
    with store.lease("waiting", "scale", wait=True, timeout=10):
        assert time.monotonic() - start >= 0.9


class FlakyDocuments(Documents):
    """The state bucket as seen over a network that drops this holder's lease renewals."""

    def __init__(self, docs: Documents) -> None:
        super().__init__(docs.s3, docs.bucket)
        self.failing = False

    def update(self, key, data, etag):
        if self.failing and key.startswith("leases/"):
            raise ConnectionError("connection reset")
        return super().update(key, data, etag)


def test_busy_error_says_when_the_lease_runs_out(store):
    store.create_app("counted")
    with store.lease("counted", "deploy", ttl=30):
        with pytest.raises(DynoformError, match=r"runs out in (29|30) s"):
            with store.lease("counted", "scale"):
                pass


def test_renewal_survives_transient_errors(store):
    store.create_app("flaky")
    flaky = Store(FlakyDocuments(store.docs))
    with flaky.lease("flaky", "deploy", ttl=1.2) as lease:
        flaky.docs.failing = True
        time.sleep(0.5)  # two renewals fail, within the lease's life
        flaky.docs.failing = False
        time.sleep(1.0)  # renewed again: the lease outlives its first ttl
        assert lease.lost is None
        flaky.save_config("flaky", {"A": "1"}, None)
    assert store.config("flaky")[0] == {"A": "1"}


def test_writes_stop_once_the_lease_is_lost(store):
    """A holder cut off from the bucket loses its lease; its next write is refused."""
    store.create_app("cutoff")
    flaky = Store(FlakyDocuments(store.docs))
    with flaky.lease("cutoff", "deploy", ttl=1.2) as lease:
        flaky.docs.failing = True
        time.sleep(1.4)  # expired: another operation takes the lease over
        with store.lease("cutoff", "scale", ttl=30):
            with pytest.raises(DynoformError, match="lost the lease on app 'cutoff' during deploy"):
                flaky.save_config("cutoff", {"A": "stale"}, None)
            with pytest.raises(DynoformError, match="lost the lease"):
                flaky.create_release("cutoff", make_release, {})
        assert lease.lost is not None
    assert store.config("cutoff")[0] == {} and store.release_versions("cutoff") == []


def test_a_lease_taken_over_is_not_deleted_by_its_old_holder(store):
    store.create_app("taken")
    flaky = Store(FlakyDocuments(store.docs))
    with flaky.lease("taken", "deploy", ttl=1.2):
        flaky.docs.failing = True
        time.sleep(1.4)
        second = Lease(store.docs, "taken", "scale", ttl=30)
        assert second.try_acquire() is None
    # the first holder's exit left the new holder's lease in place
    assert store.docs.get("leases/taken.json").data["holder"] == second.holder


def test_apps_and_config(store):
    store.create_app("one-app")
    store.create_app("two-app")
    with pytest.raises(DynoformError, match="already exists"):
        store.create_app("one-app")
    assert store.apps() == ["one-app", "two-app"]
    config, etag = store.config("one-app")
    assert config == {} and etag is None
    store.save_config("one-app", {"A": 'q"uote\nnl'}, None)
    config, etag = store.config("one-app")
    assert config == {"A": 'q"uote\nnl'}
    with pytest.raises(StaleWrite):
        store.save_config("one-app", {"A": "x"}, None)
    store.delete_app("one-app")
    assert store.apps() == ["two-app"]


def test_a_domain_has_one_owner_even_when_claimed_at_once(store):
    apps = [f"claimer-{i}" for i in range(8)]
    for app in apps:
        store.create_app(app)
    for round_ in range(5):
        domain = f"round{round_}.example.com"
        barrier = threading.Barrier(len(apps))

        def claim(app: str, domain: str = domain, barrier: threading.Barrier = barrier) -> str:
            barrier.wait()
            try:
                store.claim_domain(domain, app)
                return "won"
            except DynoformError as exc:
                return exc.message

        with ThreadPoolExecutor(len(apps)) as pool:
            results = dict(zip(apps, pool.map(claim, apps), strict=True))
        winners = [app for app, result in results.items() if result == "won"]
        assert len(winners) == 1, results
        owner = store.domain_owner(domain)
        assert winners == [owner]
        for app in apps:
            if app != owner:
                assert results[app] == f"{domain} is already a domain of {owner}"
        assert store.claim_domain(domain, owner) is False  # already its own: nothing changes


def test_domain_claims_are_released_moved_and_never_locked_by_a_gone_app(store):
    store.create_app("first")
    store.create_app("second")
    assert store.claim_domain("www.example.com", "first") is True
    with pytest.raises(DynoformError, match="already a domain of first"):
        store.claim_domain("www.example.com", "second")
    assert store.release_domain("www.example.com", "second") is False  # not its claim
    assert store.domain_owner("www.example.com") == "first"
    assert store.release_domain("www.example.com", "first") is True
    assert store.claim_domain("www.example.com", "second") is True

    # An interrupted add left a claim the app's record does not list; the app is destroyed:
    # its claim no longer holds the name.
    assert store.claim_domain("api.example.com", "first") is True
    store.delete_app("first")
    assert store.domain_owner("api.example.com") == "first"
    assert store.claim_domain("api.example.com", "second") is True
    # Nor does a claim of a destroyed app whose name was taken again by a new app.
    store.create_app("third")
    store.claim_domain("old.example.com", "third")
    store.delete_app("third")
    store.create_app("third")
    assert store.claim_domain("old.example.com", "second") is True

    # Destroying an app releases the claims of its domains; a rename moves them.
    store.update_app("second", lambda a: replace(a, domains=("www.example.com",)))
    store.create_app("renamed", store.app_id("second"))  # as apps:rename copies it
    store.move_domains("second", "renamed")
    assert store.domain_owner("www.example.com") == "renamed"
    assert store.domain_owner("api.example.com") == "second"  # not in its record: stays
    store.update_app("renamed", lambda a: replace(a, domains=("www.example.com",)))
    store.delete_app("renamed")
    assert store.domain_owner("www.example.com") is None
