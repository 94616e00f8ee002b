"""The provider's input rules under the mocks: what a real `pulumi preview` would refuse, the plan refuses."""
from __future__ import annotations

import pytest
from pulumi.runtime import mocks as pulumi_mocks

from ecom_infra import provider_rules
from ecom_infra.errors import ConfigError
from ecom_infra.mocks import PlanMocks

from ..conftest import resources_of

SG = "aws:ec2/securityGroup:SecurityGroup"


def register(typ: str, name: str, inputs: dict, stack: str = "staging"):
    args = pulumi_mocks.MockResourceArgs(typ=typ, name=name, inputs=inputs, provider="", resource_id="",
                                         custom=True)
    return PlanMocks(stack=stack).new_resource(args)


def test_an_autonamed_sg_group_fails_like_the_provider():
    # What the program declared before: no name, resource name "sg-haproxy" -> "sg-haproxy-<7 chars>".
    with pytest.raises(ConfigError) as caught:
        register(SG, "sg-haproxy", {"vpcId": "vpc-0a1b2c3d"})
    assert str(caught.value) == (
        "aws:ec2/securityGroup:SecurityGroup resource 'sg-haproxy' has a problem: invalid value for name "
        "(cannot begin with sg-). Examine values at 'sg-haproxy.name'.")


@pytest.mark.parametrize("inputs,prop", [({"name": "sg-web"}, "name"), ({"namePrefix": "sg-web-"}, "namePrefix"),
                                         ({"name": "x" * 256}, "name"), ({"namePrefix": "x" * 230}, "namePrefix")])
def test_explicit_sg_names_are_checked_too(inputs, prop):
    with pytest.raises(provider_rules.ProviderCheckError) as caught:
        register(SG, "web", inputs)
    assert caught.value.prop == prop


def test_autonames_are_the_providers_shape_and_deterministic():
    _, state = register(SG, "web", {})
    name = state["name"]
    assert name.startswith("web-") and len(name) == len("web-") + provider_rules.AUTONAME_RANDOM_LENGTH
    assert register(SG, "web", {})[1]["name"] == name                      # same inputs, same name
    assert register(SG, "web", {}, stack="production")[1]["name"] != name
    _, state = register(SG, "web", {"namePrefix": "ecom-web-"})
    assert state["name"].startswith("ecom-web-")
    assert len(state["name"]) == len("ecom-web-") + provider_rules.UNIQUE_ID_SUFFIX_LENGTH


def test_iam_role_autoname_longer_than_64_is_refused():
    with pytest.raises(provider_rules.ProviderCheckError, match=r"\(1 - 64\)"):
        register("aws:iam/role:Role", "r" * 60, {})


@pytest.mark.parametrize("stack", ["staging", "production", "synthetic"])
def test_security_groups_get_names_aws_accepts(plans, stack):
    groups = resources_of(plans(stack), SG)
    assert len(groups) == 2
    for group in groups:
        prefix = group["inputs"]["namePrefix"]
        assert not prefix.startswith("sg-") and prefix.startswith("ecom-infra-")
        provider_rules.check(SG, group["name"], group["inputs"], seed="x")      # passes the provider's rules
