import pytest
from moto import mock_aws

from provisioner.aws.session import Aws
from provisioner.aws.state import Documents
from provisioner.store import Store
from provisioner.targets import Target


@pytest.fixture(autouse=True)
def acm_issues_at_once(monkeypatch):
    """moto issues a requested ACM certificate after 60 s by default; at once here."""
    import moto.settings

    monkeypatch.setattr(moto.settings, "ACM_VALIDATION_WAIT", -1)


@pytest.fixture(autouse=True, scope="session")
def moto_as_aws():
    """S3's conditional writes are atomic, moto's are not under threads; CloudWatch computes
    percentiles, moto does not, keeps a value per count and reads a day of points slowly; ELBv2
    enforces AWS's default quotas, moto does not (motofix items 6 to 8 and 10; the others stay
    the daemon's own)."""
    from provisioner.localcloud import motofix

    motofix.atomic_conditional_writes()
    motofix.percentiles()
    motofix.weighted_values()
    motofix.fast_metric_reads()
    motofix.quotas()


@pytest.fixture
def aws():
    with mock_aws():
        aws = Aws(Target("test", region="us-east-1"))
        # The `target` fixture's app domain has its public zone, as on a real account:
        # platform:init refuses a domain ACM could not validate.
        aws.client("route53").create_hosted_zone(Name=TEST_DOMAIN, CallerReference="tests")
        yield aws


@pytest.fixture
def store(aws):
    docs = Documents(aws.s3, "dynoform-test-state")
    docs.ensure_bucket("us-east-1")
    return Store(docs)


@pytest.fixture
def config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    # The local CA of `local` targets: here, not the machine's local cloud.
    monkeypatch.setenv("DYNOFORM_LOCAL_DIR", str(tmp_path / "local"))
    return tmp_path


TEST_DOMAIN = "plat.example.com"  # the `target` fixture's app domain


@pytest.fixture
def target():
    return Target("test", region="us-east-1", platform="plat")


@pytest.fixture
def moto_cli(tmp_path, monkeypatch, capsys):
    """`dynoform ARGS` in this process on target t1 (no platform yet): (status, stdout, stderr)."""
    from cli_support import DEFAULT_DOMAIN, public_zone, run

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    with mock_aws():
        assert run(capsys, "targets:add", "t1", "--region", "us-east-1")[0] == 0
        public_zone(DEFAULT_DOMAIN)
        yield lambda *args: run(capsys, "-t", "t1", *args)


@pytest.fixture
def like_aws():
    """moto as AWS is where moto hides it (motofix item 9): a new instance or security group
    stays unknown for a moment, paged calls answer 2 items a page. Yields the knobs (set
    `conflicts` for 409s on conditional writes); turned off after the test."""
    from provisioner.localcloud import motofix

    motofix.imitate_aws(visible_after=0.3, page_size=2)
    yield motofix.imitation
    motofix.imitate_aws(visible_after=0.0, page_size=0)
    motofix.imitation["conflicts"] = 0


@pytest.fixture
def aws_endpoint():
    """The local cloud's AWS endpoint (moto, served as the daemon serves it) on a free port of
    127.0.0.1, its state reset: moto keeps its state per process, not per server."""
    import urllib.request

    from provisioner.localcloud.endpoint import Endpoint

    server = Endpoint("127.0.0.1", 0)
    server.start()
    url = f"http://127.0.0.1:{server.port}"
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
    try:
        yield server
    finally:
        server.stop()
