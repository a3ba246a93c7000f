import pytest
from moto import mock_aws

from provisioner.aws.session import Aws
from provisioner.aws.state import Documents
from provisioner.store import Store
from provisioner.targets import Target


@pytest.fixture
def aws():
    with mock_aws():
        yield Aws(Target("test", region="us-east-1"))


@pytest.fixture
def store(aws):
    docs = Documents(aws.s3, "dynoform-test-state")
    docs.ensure_bucket("us-east-1")
    return Store(docs)
