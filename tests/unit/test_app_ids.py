"""App ids and the bucket layout keyed by them (pure)."""

import pytest

from provisioner.aws import blobs as keys
from provisioner.errors import ValidationError
from provisioner.model.app import App
from provisioner.model.names import validate_app_name
from provisioner.store import APP_ID_RE, new_app_id


def test_objects_are_keyed_by_the_app_id() -> None:
    sha = "ab" * 32
    assert keys.source_key("0a1b2c3d4e5f", sha) == f"sources/0a1b2c3d4e5f/{sha}.tgz"
    assert keys.slug_key("0a1b2c3d4e5f", sha) == f"slugs/0a1b2c3d4e5f/{sha}.tgz"
    assert keys.cache_key("0a1b2c3d4e5f") == "caches/0a1b2c3d4e5f/cache.tar"
    assert keys.build_log_key("0a1b2c3d4e5f", "b1-ab") == "builds/0a1b2c3d4e5f/b1-ab.log"
    assert keys.app_prefixes("0a1b2c3d4e5f") == [
        "slugs/0a1b2c3d4e5f/",
        "sources/0a1b2c3d4e5f/",
        "caches/0a1b2c3d4e5f/",
        "builds/0a1b2c3d4e5f/",
        "buildpacks/0a1b2c3d4e5f/",
    ]


def test_new_ids_are_distinct_and_never_an_app_name() -> None:
    ids = {new_app_id() for _ in range(500)}
    assert len(ids) == 500
    for app_id in ids:
        assert APP_ID_RE.fullmatch(app_id)
        with pytest.raises(ValidationError):
            validate_app_name(app_id)  # so no id is ever a legacy app's name-as-id


def test_an_app_from_before_ids_has_its_name_as_id() -> None:
    assert App.from_dict({"name": "shop", "id": "0a1b2c3d4e5f"}).app_id == "0a1b2c3d4e5f"
    assert App.from_dict({"name": "shop"}).app_id == "shop"
