import pytest

from provisioner import targets as tg
from provisioner.errors import DynoformError, ValidationError


def test_local_is_built_in_and_default_cidrs(tmp_path):
    path = tmp_path / "t.toml"
    loaded = tg.load_targets(path)
    assert loaded["local"].is_local and loaded["local"].cidr == "198.18.0.0/16"
    tg.add_target(tg.Target("prod", region="eu-west-1", profile='we"ird'), path)
    prod = tg.get_target("prod", path)
    assert prod.profile == 'we"ird' and prod.cidr == "10.42.0.0/16" and not prod.is_local


def test_bad_targets_rejected(tmp_path):
    path = tmp_path / "t.toml"
    with pytest.raises(ValidationError):
        tg.add_target(tg.Target("local"), path)
    with pytest.raises(ValidationError):
        tg.add_target(tg.Target("Prod"), path)
    with pytest.raises(ValidationError):
        tg.add_target(tg.Target("prod", region="mars"), path)
    with pytest.raises(DynoformError):
        tg.remove_target("nope", path)
    path.write_text("not [toml")
    with pytest.raises(DynoformError, match="not valid TOML"):
        tg.load_targets(path)
