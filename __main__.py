"""ecom-infra: the e-commerce platform for one environment (stack).

Thin on purpose: settings -> components -> exports. See README.md and docs/.
"""
import pulumi

from components.platform import build
from ecom_infra import settings as stack_settings
from ecom_infra.errors import ConfigError
from ecom_infra.outputs import export_outputs

try:
    settings, secrets = stack_settings.load()
    platform = build(settings, secrets)
except ConfigError as exc:
    # One line, no traceback: the key, what is wrong, an example.
    raise pulumi.RunError(str(exc)) from None

export_outputs(platform)
