"""Stand-in provider plugins for the local stack: `pulumi-resource-aws` on moto, `pulumi-resource-tls`.

The real pulumi-aws and pulumi-tls cannot be built here, so `pulumi up --stack local` runs these
instead (`standins/bin` first on PATH). They speak the engine's provider protocol (gRPC, served by
the Pulumi Python SDK) and apply the same input rules, autonames and replacement decisions as the
real providers, from the one table in `ecom_infra/provider_rules.py` the offline mocks use too.
"""
