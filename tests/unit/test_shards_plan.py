"""Shard placement and rule packing (provisioner.plan.shards): pure, exact."""

from provisioner.plan.shards import (
    AWS,
    QUOTA_NAMES,
    Load,
    Need,
    Quotas,
    full_quota,
    pack_hosts,
    place,
    rules_needed,
)


def test_an_empty_platform_places_on_shard_0():
    assert place([Load()], Need()) == 0


def test_a_shard_of_100_apps_is_full_for_target_groups():
    loads = [Load(apps=100, rules=100, certificates=0)]
    assert full_quota(loads[0], Need(), Quotas(certificates=1000)) == "target_groups"


def test_each_app_keeps_room_for_one_certificate():
    # 25 apps without certificates: the 26th goes to a new shard (each could add a domain)
    assert full_quota(Load(apps=25, rules=25), Need()) == "certificates"
    assert place([Load(apps=25, rules=25)], Need()) == 1
    assert place([Load(apps=24, rules=24)], Need()) == 0


def test_certificates_beyond_one_an_app_count():
    assert full_quota(Load(apps=5, rules=5, certificates=24), Need()) is None
    assert full_quota(Load(apps=5, rules=5, certificates=25), Need()) == "certificates"
    assert full_quota(Load(apps=5, rules=5, certificates=20), Need(certificates=6)) == (
        "certificates"
    )


def test_rules_count_per_load_balancer():
    # AWS's quota is 100 rules per Application Load Balancer, its listeners together
    assert full_quota(Load(apps=1, rules=98), Need(rules=3), Quotas(certificates=1000)) == "rules"
    assert full_quota(Load(apps=1, http_rules=100), Need(http_rules=1)) == "rules"
    assert full_quota(Load(apps=1, rules=50, http_rules=50), Need(rules=1)) == "rules"
    assert full_quota(Load(apps=1, rules=50, http_rules=49), Need(rules=1)) is None
    assert full_quota(Load(apps=1, rules=49, http_rules=49), Need(rules=1, http_rules=1)) is None
    assert full_quota(Load(apps=1, rules=49, http_rules=50), Need(rules=1, http_rules=1)) == (
        "rules"
    )
    assert QUOTA_NAMES["rules"] == "rules per Application Load Balancer"


def test_an_existing_app_needs_no_target_group_or_reserve():
    load = Load(apps=100, rules=99, certificates=24)
    assert full_quota(load, Need(rules=1, certificates=1), new_app=False) is None
    assert full_quota(load, Need(rules=2), new_app=False) == "rules"
    assert full_quota(load, Need(rules=0, certificates=2), new_app=False) == "certificates"


def test_placement_skips_full_shards_and_asks_for_a_new_one():
    loads = [Load(apps=25, rules=25), Load(apps=3, rules=3, certificates=25), Load(apps=2)]
    assert place(loads, Need()) == 2
    assert place(loads[:2], Need()) == 2


def test_1000_apps_with_a_domain_each_fit_in_40_shards():
    shards: list[Load] = []
    for _ in range(1000):
        index = place(shards, Need(rules=1, certificates=1))
        if index == len(shards):
            shards.append(Load())
        s = shards[index]
        shards[index] = Load(s.apps + 1, s.rules + 1, 0, s.certificates + 1)
    assert len(shards) == 40 <= AWS.load_balancers
    assert {s.apps for s in shards} == {25}


def test_rules_needed():
    assert [rules_needed(n) for n in (0, 1, 4, 5, 8, 9)] == [1, 1, 1, 2, 2, 3]


OWN = "web.apps.example.com"


def test_pack_an_app_without_domains():
    assert pack_hosts(OWN, [], []) == [[OWN]]


def test_pack_fills_rules_of_five_with_the_own_name_in_each():
    customs = [f"d{i}.example.org" for i in range(9)]
    assert pack_hosts(OWN, customs, []) == [
        [OWN, "d0.example.org", "d1.example.org", "d2.example.org", "d3.example.org"],
        [OWN, "d4.example.org", "d5.example.org", "d6.example.org", "d7.example.org"],
        [OWN, "d8.example.org"],
    ]


def test_pack_is_sticky_new_names_fill_free_places():
    current = [[OWN, "b.org", "d.org", "f.org", "h.org"], [OWN, "z.org"]]
    assert pack_hosts(OWN, ["a.org", "b.org", "f.org", "h.org", "z.org", "d.org"], current) == [
        [OWN, "b.org", "d.org", "f.org", "h.org"],
        [OWN, "a.org", "z.org"],
    ]
    # removing d.org frees its place; the next new name takes it, nothing else moves
    assert pack_hosts(OWN, ["b.org", "f.org", "h.org", "z.org", "c.org"], current) == [
        [OWN, "b.org", "c.org", "f.org", "h.org"],
        [OWN, "z.org"],
    ]


def test_pack_drops_emptied_rules_but_the_first():
    current = [[OWN, "a.org"], [OWN, "b.org"]]
    assert pack_hosts(OWN, ["a.org"], current) == [[OWN, "a.org"]]
    assert pack_hosts(OWN, ["b.org"], current) == [[OWN], [OWN, "b.org"]]
    assert pack_hosts(OWN, [], current) == [[OWN]]


def test_a_platform_record_keeps_its_shards():
    from provisioner.aws.platform import Platform, Shard
    from provisioner.aws.router import ShardListeners

    fields = dict.fromkeys(
        ["name", "target", "region", "cidr", "vpc_id", "igw_id", "route_table_id",
         "runner_sg_id", "lb_sg_id", "key_name", "key_path", "bucket"], "x",
    )  # fmt: skip
    platform = Platform(
        **fields, subnet_ids=[], zones=[], lb_arn="lb0", lb_dns="d0", listener_arn="h0",
        https_listener_arn="s0", shards=[Shard("lb1", "d1", "h1", "s1")],
    )  # fmt: skip
    again = Platform(**platform.as_dict())  # as the state store's record is read back
    assert again == platform
    assert [s.router for s in again.all_shards] == [
        ShardListeners("s0", "h0"),
        ShardListeners("s1", "h1"),
    ]


def test_shard_names_fit_elbv2_and_never_collide():
    """A load balancer's name holds 32 characters: `dynoform-<platform>--<n>` would cut a
    platform name of 18 to 21 characters, and two such platforms would share shards."""
    from provisioner.aws.listeners import shard_name

    assert shard_name("dynoform", 0) == "dynoform-dynoform"
    assert shard_name("dynoform", 1) == "dynoform-dynoform--1"  # as before for short names
    assert shard_name("abcdefghijklmnopq", 7) == "dynoform-abcdefghijklmnopq--7"
    assert shard_name("abcdefghijklmnopqrstu", 3) == "df-abcdefghijklmnopqrstu--3"
    platforms = ["abcdefghijklmnopq", "abcdefghijklmnopqr", "abcdefghijklmnopqrstu"]
    platforms.append("abcdefghijklmnopqwxyz")  # 21 characters, the same first 17
    names = {shard_name(p, n) for p in platforms for n in (0, 1, 12, 49)}
    assert len(names) == 16
    assert max(map(len, names)) <= 32
