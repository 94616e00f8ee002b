"""A tiny Pulumi program for the engine test: the resource kinds the local stack needs, on the stand-ins."""
import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

cfg = pulumi.Config()
endpoint = cfg.require("endpoint")
provider = aws.Provider("aws", region="us-east-1", access_key="test", secret_key="test",
                        endpoints=[{s: endpoint for s in ("ec2", "iam", "s3", "sts")}],
                        skip_credentials_validation=True, skip_requesting_account_id=True,
                        skip_metadata_api_check=True, s3_use_path_style=True,
                        default_tags={"tags": {"Project": "standin-test"}})
opts = pulumi.ResourceOptions(provider=provider)

group = aws.ec2.SecurityGroup(
    "web", vpc_id=cfg.require("vpcId"), description="stand-in test",
    **({"name": cfg.get("sgName")} if cfg.get("sgName") else {"name_prefix": "standin-web-"}),
    ingress=[{"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr_blocks": ["10.0.0.0/8"]}],
    egress=[{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}], opts=opts)
host_key = tls.PrivateKey("host-key", algorithm="ED25519")
key_pair = aws.ec2.KeyPair("admin-key", public_key=host_key.public_key_openssh.apply(str.strip), opts=opts)
image = aws.ec2.get_ami(most_recent=True, owners=["amazon"], opts=pulumi.InvokeOptions(provider=provider))
instance = aws.ec2.Instance(
    "host", ami=image.id, instance_type="t3.micro", subnet_id=cfg.require("subnetId"),
    private_ip=cfg.require("privateIp"), vpc_security_group_ids=[group.id], key_name=key_pair.key_name,
    user_data=pulumi.Output.secret(host_key.public_key_openssh.apply(lambda k: f"#cloud-config\n# {k.strip()}\n")),
    user_data_replace_on_change=True, tags={"Name": "standin-host"},
    opts=pulumi.ResourceOptions(provider=provider, delete_before_replace=True, additional_secret_outputs=["userData"]))
vip = aws.ec2.Eip("vip", domain="vpc", opts=opts)
association = aws.ec2.EipAssociation("vip-master", allocation_id=vip.allocation_id, instance_id=instance.id,
                                     allow_reassociation=True,
                                     opts=pulumi.ResourceOptions(provider=provider, ignore_changes=["instanceId"]))

pulumi.export("groupName", group.name)
pulumi.export("instanceId", instance.id)
pulumi.export("privateIp", instance.private_ip)
pulumi.export("associationId", association.id)
pulumi.export("fingerprint", host_key.public_key_fingerprint_sha256)
