import pytest

from provisioner.localcloud import motofix
from provisioner.localcloud.motofix import health_state, parse_show_stat

STAT = """# pxname,svname,qcur,status,
tg-web,FRONTEND,,OPEN,
tg-web,198.18.0.4-20001,0,UP,
tg-web,198.18.0.4-20002,0,DOWN 1/2,
tg-web,198.18.0.5-20001,0,DOWN,
tg-web,198.18.0.6-20001,0,DRAIN,
tg-web,198.18.0.7-20001,0,MAINT,
tg-web,198.18.0.8-20001,0,no check,
tg-web,BACKEND,0,UP,
"""


def test_haproxy_states_map_to_elbv2_health():
    states = parse_show_stat(STAT)
    assert states == {
        ("tg-web", "198.18.0.4-20001"): "healthy",
        ("tg-web", "198.18.0.4-20002"): "initial",
        ("tg-web", "198.18.0.5-20001"): "unhealthy",
        ("tg-web", "198.18.0.6-20001"): "draining",
        ("tg-web", "198.18.0.7-20001"): "initial",
        ("tg-web", "198.18.0.8-20001"): "healthy",
    }
    assert health_state("UP 1/3") == "healthy"
    assert health_state("weird") == "initial"


def test_pages_of_the_local_clouds_imitation():
    from provisioner.localcloud.motofix import _paged

    items = list("abcde")
    assert _paged(items, str, None, 2) == (["a", "b"], "b")
    assert _paged(items, str, "b", 2) == (["c", "d"], "d")
    assert _paged(items, str, "d", 2) == (["e"], None)
    assert _paged([], str, None, 2) == ([], None)


def test_target_changes_are_noted_by_target_group_until_anything_else_changes():
    from provisioner.localcloud import motofix

    motofix.take_target_changes()
    assert motofix.take_target_changes() == set()
    motofix.note_change("RegisterTargets", "arn:tg/a")
    motofix.note_change("DeregisterTargets", "arn:tg/b")
    assert motofix.elb_changed.is_set()
    assert motofix.take_target_changes() == {"arn:tg/a", "arn:tg/b"}
    motofix.note_change("RegisterTargets", "arn:tg/a")
    motofix.note_change("CreateRule", None)  # a structural change: read everything
    motofix.note_change("RegisterTargets", "arn:tg/c")
    assert motofix.take_target_changes() is None
    assert motofix.take_target_changes() == set()
    motofix.elb_changed.clear()


def test_fast_dispatch_lists_moto_services_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import backends

    listed = list(backends.list_of_moto_modules())
    calls = []
    original = backends.list_of_moto_modules

    def counted() -> object:
        calls.append(1)
        return original()

    monkeypatch.setattr(backends, "list_of_moto_modules", counted)
    motofix.fast_dispatch()
    assert list(backends.list_of_moto_modules()) == listed
    assert "s3" in backends.list_of_moto_modules() and "elbv2" in listed
    assert calls == [1]  # the directory was read by fast_dispatch only
