"""`pulumi-resource-aws` stand-in: the resources and functions ecom-infra uses, on moto through boto3.

The version it reports is the one the program's pulumi_aws asks for, so the engine takes this plugin
from PATH instead of downloading the real one.
"""
from __future__ import annotations

import re

from ..server import Context, Provider, ProviderError
from . import ec2, iam, s3
from .common import aws_error, client

VERSION = "7.51.1"      # pulumi_aws in requirements.txt


def get_ami(provider: Provider, args: dict) -> dict:
    """aws.ec2.getAmi: DescribeImages, then name_regex and most_recent as ec2/ec2_ami_data_source.go does."""
    query = {}
    if args.get("owners"):
        query["Owners"] = list(args["owners"])
    if args.get("executableUsers"):
        query["ExecutableUsers"] = list(args["executableUsers"])
    if args.get("filters"):
        query["Filters"] = [{"Name": f["name"], "Values": list(f["values"])} for f in args["filters"]]
    try:
        images = client(Context(provider), "ec2").describe_images(**query)["Images"]
    except Exception as exc:  # noqa: BLE001 - botocore errors, worded as terraform words them
        raise aws_error("reading EC2 AMIs", exc) from None
    if args.get("nameRegex"):
        images = [i for i in images if re.search(args["nameRegex"], i.get("Name", ""))]
    if not images:
        raise ProviderError("Your query returned no results. Please change your search criteria and try again.")
    if len(images) > 1 and not args.get("mostRecent"):
        raise ProviderError("Your query returned more than one result. Please try a more specific search criteria, "
                            "or set `most_recent` attribute to true.")
    image = max(images, key=lambda i: i.get("CreationDate", ""))
    return {**args, "id": image["ImageId"], "imageId": image["ImageId"], "name": image.get("Name", ""),
            "architecture": image.get("Architecture", ""), "ownerId": image.get("OwnerId", ""),
            "creationDate": image.get("CreationDate", ""), "description": image.get("Description", ""),
            "rootDeviceName": image.get("RootDeviceName", ""), "state": image.get("State", ""),
            "arn": f"arn:aws:ec2:{provider.config.get('region') or 'us-east-1'}::image/{image['ImageId']}",
            "virtualizationType": image.get("VirtualizationType", ""), "public": bool(image.get("Public", False))}


def get_caller_identity(provider: Provider, args: dict) -> dict:
    found = client(Context(provider), "sts").get_caller_identity()
    return {"accountId": found["Account"], "arn": found["Arn"], "userId": found["UserId"], "id": found["Account"]}


def make_provider() -> Provider:
    resources = {r.token: r for r in (*ec2.RESOURCES, *iam.RESOURCES, *s3.RESOURCES)}
    functions = {"aws:ec2/getAmi:getAmi": get_ami, "aws:index/getCallerIdentity:getCallerIdentity": get_caller_identity,
                 **s3.FUNCTIONS}
    return Provider(package="aws", version=VERSION, resources=resources, functions=functions)
