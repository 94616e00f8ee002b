"""Host names: built by ecom_infra.host_names only, ordered by number (not as text) wherever they are listed."""
from __future__ import annotations

import re

from ecom_infra.host_names import HAPROXY_NODES, ServerId, server_ids

from ..conftest import resources_of


def test_server_ids_name_count_from_one_and_sort_by_number():
    ids = server_ids("ecom-platform", 11)
    assert [s.name for s in ids[:2]] + [ids[-1].name] == ["ecom-platform-1", "ecom-platform-2", "ecom-platform-11"]
    assert [s.first for s in ids] == [True] + [False] * 10
    assert sorted(reversed(ids)) == ids                        # as text, -10 and -11 would come before -2
    assert sorted([ServerId("ecom-platform", 1), ServerId("ecom-docs", 2)])[0].app == "ecom-docs"


def test_haproxy_lists_every_server_of_an_app_in_number_order(plans):
    plan = plans("synthetic")                                   # 2 apps x 20 servers
    hosts = {r["name"] for r in resources_of(plan, "aws:ec2/instance:Instance")}
    assert hosts == {s.name for app in ("ecom-platform", "ecom-docs") for s in server_ids(app, 20)} | set(HAPROXY_NODES)
    [config] = [r for r in plan["resources"] if r["name"] == "haproxy-a-haproxy-config"]
    listed = re.findall(r"^\s*server (ecom-platform-\d+) ", config["inputs"]["create"], re.M)
    assert listed == [s.name for s in server_ids("ecom-platform", 20)]
