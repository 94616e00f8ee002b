"""make up's shortcuts for a fleet that is already up: when the offline shape plan may be skipped, and the check
that the deploying plan declares the hosts the fleet runs. No fleet needed."""
from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from fleet import local
from fleet import spec as fleet_spec
from fleet.network import FleetError
from tests.fleet.conftest import keypair, make_spec


def test_shape_inputs_change_with_config_and_keys_only():
    fleet = local.LocalFleet.from_stack()
    same = local.shape_inputs(fleet, {"ecom-infra:x": "1"}, {"ecom-infra:deployKey": "k"})
    assert same == local.shape_inputs(fleet, {"ecom-infra:x": "1"}, {"ecom-infra:deployKey": "k"})
    assert same != local.shape_inputs(fleet, {"ecom-infra:x": "2"}, {"ecom-infra:deployKey": "k"})
    assert same != local.shape_inputs(fleet, {"ecom-infra:x": "1"}, {"ecom-infra:deployKey": "other"})
    assert same != local.shape_inputs(dataclasses.replace(fleet, stack="staging"), {"ecom-infra:x": "1"},
                                      {"ecom-infra:deployKey": "k"})


def test_a_plan_whose_host_differs_from_the_fleets_stops_the_run_and_forgets_the_shape(tmp_path):
    raw, _ = make_spec("shape", "shapebr0", ipaddress.ip_network("10.219.0.0/24"), ("web-1",), keypair()[1])
    spec = fleet_spec.parse(raw)
    fleet = dataclasses.replace(local.LocalFleet.from_stack(), name="shape")
    state = tmp_path / "shape.local"      # LocalFleet.state under the patched state root
    state.mkdir()
    (state / "shape.json").write_text("{}")
    host = spec.host("web-1")
    good = {"hosts": {"web-1": {"privateIp": str(host.address), "hostKey": host.host_public_key + " comment"}}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fleet_spec, "STATE_ROOT", tmp_path)
        local.check_shape(fleet, spec, good)                       # same address and key: nothing to say
        assert (state / "shape.json").exists()
        moved = {"hosts": {"web-1": {**good["hosts"]["web-1"], "privateIp": "10.219.0.99"}}}
        with pytest.raises(FleetError, match=r"^web-1: the deploying plan's host is not the one the fleet runs"):
            local.check_shape(fleet, spec, moved)
        assert not (state / "shape.json").exists()
        with pytest.raises(FleetError, match=r"^web-2: "):
            local.check_shape(fleet, spec, {"hosts": {"web-2": good["hosts"]["web-1"]}})
