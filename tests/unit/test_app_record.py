"""The app record: today's documents (and older ones) read and written back unchanged."""

from dataclasses import replace

import pytest

from provisioner.model.app import App

DOCUMENTS = [
    # an app from before ids
    {"name": "old-app", "stack": "debian-13"},
    # apps:create today
    {"name": "shop", "id": "0a1b2c3d4e5f", "created_at": "2026-01-02T03:04:05+00:00",
     "stack": "debian-13", "buildpacks": []},
    # after buildpacks:set, domains:add, maintenance:on and apps:http --allow
    {"name": "shop", "id": "0a1b2c3d4e5f", "created_at": "2026-01-02T03:04:05+00:00",
     "stack": "debian-13", "buildpacks": ["/srv/dynoform/build/buildpacks/python"],
     "domains": ["a.example.com", "www.example.com"], "maintenance": True, "plain_http": False},
    # domains:remove of the last domain leaves an empty list; keys of a later version stay
    {"name": "shop", "id": "0a1b2c3d4e5f", "domains": [], "maintenance": False,
     "future": {"x": 1}},
]  # fmt: skip


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_documents_round_trip_exactly(doc: dict[str, object]) -> None:
    assert App.from_dict(doc).to_dict() == doc


def test_fields_and_defaults() -> None:
    app = App.from_dict(DOCUMENTS[2])
    assert app.domains == ("a.example.com", "www.example.com")
    assert app.buildpacks == ("/srv/dynoform/build/buildpacks/python",)
    assert app.maintenance and not app.plain_http and app.app_id == "0a1b2c3d4e5f"
    old = App.from_dict(DOCUMENTS[0])
    assert (old.id, old.app_id, old.created_at, old.domains) == (None, "old-app", None, ())
    assert old.identity == "None"  # no id, no creation time: as claims recorded it before


def test_a_change_writes_only_what_it_set() -> None:
    old = App.from_dict(DOCUMENTS[0])
    changed = replace(old, maintenance=True, name="new-app", id=old.app_id)
    assert changed.to_dict() == {
        "name": "new-app", "id": "old-app", "stack": "debian-13", "maintenance": True
    }  # fmt: skip


def test_records_compare_by_their_fields() -> None:
    assert App.from_dict(DOCUMENTS[1]) == App(
        "shop", "0a1b2c3d4e5f", "2026-01-02T03:04:05+00:00", "debian-13"
    )
