"""The fleet's metadata responder (fleet/imds.py) on loopback, against a real moto server: no root, no fleet.

Callers are told apart by their source address (127.0.0.10 is the instance, 127.0.0.11 another machine), as the
fleet's hosts are by their bridge address. The fleet tests (test_cloud_init.py) run it for real in a fleet.
"""
from __future__ import annotations

import ipaddress
import json
import socket
import threading
import uuid

import pytest

from fleet import imds
from fleet import moto as fleet_moto
from tests.support.moto_server import moto_endpoint  # noqa: F401 (fixture)

INSTANCE_ADDRESS = "127.0.0.10"


@pytest.fixture
def responder(moto_endpoint: str):  # noqa: F811
    """(server port, instance id, role name) for one instance at 127.0.0.10 with an instance profile."""
    ec2, iam = fleet_moto.client(moto_endpoint, "ec2"), fleet_moto.client(moto_endpoint, "iam")
    role = f"role-{uuid.uuid4().hex[:8]}"
    iam.create_role(RoleName=role, AssumeRolePolicyDocument="{}")
    iam.create_instance_profile(InstanceProfileName=role)
    iam.add_role_to_instance_profile(InstanceProfileName=role, RoleName=role)
    for old in ec2.describe_instances(Filters=[{"Name": "private-ip-address", "Values": [INSTANCE_ADDRESS]}])[
            "Reservations"]:
        ec2.terminate_instances(InstanceIds=[i["InstanceId"] for i in old["Instances"]])
    vpc = ec2.create_vpc(CidrBlock="127.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="127.0.0.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet,
                                 PrivateIpAddress=INSTANCE_ADDRESS,
                                 IamInstanceProfile={"Name": role})["Instances"][0]["InstanceId"]
    server = imds.Server(("127.0.0.1", 0), imds.Metadata(moto_endpoint), ipaddress.IPv4Network("127.0.0.0/24"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], instance, role
    server.shutdown()
    server.server_close()
    ec2.terminate_instances(InstanceIds=[instance])


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
            source: str = INSTANCE_ADDRESS) -> tuple[int, str]:
    """(status, body) of one HTTP/1.0 request from `source`."""
    with socket.create_connection(("127.0.0.1", port), source_address=(source, 0), timeout=30) as conn:
        lines = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        conn.sendall(f"{method} {path} HTTP/1.0\r\n{lines}\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def token(port: int, source: str = INSTANCE_ADDRESS) -> str:
    status, body = request(port, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"},
                              source)
    assert status == 200 and body
    return body


def test_imdsv2_only_tokens_are_required_and_bound_to_the_caller(responder) -> None:
    port, instance, _role = responder
    path = "/latest/meta-data/instance-id"
    assert request(port, "GET", path)== (401, "Unauthorized")                       # IMDSv1 refused
    assert request(port, "GET", path, {"X-aws-ec2-metadata-token": "forged"})[0] == 401
    assert request(port, "PUT", "/latest/api/token")[0] == 400                           # TTL header required
    for ttl in ("0", "21601", "1e3"):
        assert request(port, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": ttl})[0] == 400
    assert request(port, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60",
                                                      "X-Forwarded-For": "10.0.0.1"})[0] == 403
    mine = token(port)
    assert request(port, "GET", path, {"X-aws-ec2-metadata-token": mine})== (200, instance)
    # Another caller can neither use this token nor learn this instance's id.
    assert request(port, "GET", path, {"X-aws-ec2-metadata-token": mine}, source="127.0.0.11")[0] == 401
    theirs = token(port, source="127.0.0.11")
    assert request(port, "GET", path, {"X-aws-ec2-metadata-token": theirs}, source="127.0.0.11")[0] == 404


def test_credentials_are_the_profile_role_s_from_moto(responder, moto_endpoint: str) -> None:  # noqa: F811
    port, instance, role = responder
    auth = {"X-aws-ec2-metadata-token": token(port)}
    base = "/latest/meta-data/iam/"
    assert request(port, "GET", f"{base}security-credentials/", auth)== (200, role)
    info = json.loads(request(port, "GET", f"{base}info", auth)[1])
    assert info["InstanceProfileArn"].endswith(f":instance-profile/{role}")
    status, body = request(port, "GET", f"{base}security-credentials/{role}", auth)
    creds = json.loads(body)
    assert status == 200 and creds["Code"] == "Success" and creds["Type"] == "AWS-HMAC"
    assert creds["Expiration"].endswith("Z") and creds["AccessKeyId"].startswith("ASIA")
    # They are moto's: STS says who they belong to.
    import boto3  # noqa: PLC0415

    sts = boto3.client("sts", endpoint_url=moto_endpoint, region_name="us-east-1",
                       aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                       aws_session_token=creds["Token"])
    assert sts.get_caller_identity()["Arn"].endswith(f":assumed-role/{role}/{instance}")
    # Cached until they near expiry: the same document again.
    assert json.loads(request(port, "GET", f"{base}security-credentials/{role}", auth)[1]) == creds
    assert request(port, "GET", f"{base}security-credentials/other-role", auth)[0] == 404


def test_replies_leave_with_ttl_1() -> None:
    server = imds.Server(("127.0.0.1", 0), imds.Metadata("http://127.0.0.1:1"), ipaddress.IPv4Network("127.0.0.0/8"))
    try:
        assert server.socket.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == imds.HOP_LIMIT == 1
    finally:
        server.server_close()
