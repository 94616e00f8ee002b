"""ecom-infra: settings, the sha file, the offline plan and the `ecom-deploy` CLI."""
