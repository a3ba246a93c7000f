"""botocore's data files through the parsed-once cache (provisioner/aws/models.py)."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.loaders import JSONFileLoader

from provisioner.aws import models


def _model(tmp_path: Path, content: dict[str, object]) -> str:
    path = tmp_path / "data" / "service-2"
    path.parent.mkdir(exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(content))
    return str(path)


def test_a_file_is_parsed_once_then_read_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    path = _model(tmp_path, {"b": 1, "a": {"y": 2, "x": 3}})
    parsed: list[str] = []
    parse = JSONFileLoader._load_file

    def counting(self: JSONFileLoader, full_path: str, open_method: Any) -> Any:
        parsed.append(full_path)
        return parse(self, full_path, open_method)

    monkeypatch.setattr(JSONFileLoader, "_load_file", counting)
    first = models.CachedJSONFileLoader(cache).load_file(path)
    again = models.CachedJSONFileLoader(cache).load_file(path)
    assert first == again == {"b": 1, "a": {"y": 2, "x": 3}}
    assert isinstance(again, OrderedDict) and list(again) == ["b", "a"]  # as botocore makes it
    assert parsed == [path + ".json"]
    assert len(list(cache.iterdir())) == 1
    assert cache.stat().st_mode & 0o777 == 0o700


def test_a_changed_file_is_parsed_again(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = _model(tmp_path, {"version": 1})
    assert models.CachedJSONFileLoader(cache).load_file(path) == {"version": 1}
    Path(path + ".json").write_text(json.dumps({"version": 22}))
    assert models.CachedJSONFileLoader(cache).load_file(path) == {"version": 22}


def test_a_broken_cache_entry_is_parsed_again_and_replaced(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = _model(tmp_path, {"ok": True})
    models.CachedJSONFileLoader(cache).load_file(path)
    (entry,) = cache.iterdir()
    entry.write_bytes(b"not a pickle")
    assert models.CachedJSONFileLoader(cache).load_file(path) == {"ok": True}
    assert entry.read_bytes() != b"not a pickle"


def test_a_directory_others_may_write_is_not_used(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o777)
    path = _model(tmp_path, {"ok": True})
    assert models.CachedJSONFileLoader(cache).load_file(path) == {"ok": True}
    assert list(cache.iterdir()) == []


def test_clients_made_through_the_cache_match_botocore_own(tmp_path: Path) -> None:
    plain = botocore.session.Session()
    cached = botocore.session.Session()
    cached.register_component("data_loader", models.loader(tmp_path / "cache"))
    for session in (cached, cached):  # the second time from the pickles
        model = session.get_service_model("elbv2")
        assert model.operation_names == plain.get_service_model("elbv2").operation_names
    assert any((tmp_path / "cache").iterdir())


def test_a_model_is_found_without_listing_every_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import UnknownServiceError
    from botocore.loaders import Loader

    plain = Loader()
    ours = models.loader(tmp_path / "cache")
    listed: list[str] = []
    listing = Loader.list_available_services

    def counting(self: Loader, type_name: str) -> Any:
        listed.append(type_name)
        return listing(self, type_name)

    monkeypatch.setattr(Loader, "list_available_services", counting)
    for service, kind in [("s3", "service-2"), ("s3", "paginators-1"), ("ec2", "service-2")]:
        assert ours.load_service_model(service, kind) == plain.load_service_model(service, kind)
    assert ours.load_service_model("s3", "service-2", "2006-03-01") == plain.load_service_model(
        "s3", "service-2", "2006-03-01"
    )
    listed.clear()
    ours.load_service_model("elbv2", "waiters-2")
    assert listed == []
    with pytest.raises(UnknownServiceError, match="Unknown service: 'no-such-service'"):
        ours.load_service_model("no-such-service", "service-2")
    assert listed == ["service-2"]  # botocore's own lookup names the services it knows
