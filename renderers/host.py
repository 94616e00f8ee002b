"""Host bootstrap: the cloud-init user data every EC2 host boots with."""
from __future__ import annotations

from . import render

# Replaces the table as a whole, so running it twice (bootcmd, then runcmd) leaves one rule.
IMDS_RULE = ("nft delete table inet ecom_imds 2>/dev/null; nft add table inet ecom_imds && "
             "nft add chain inet ecom_imds out '{ type filter hook output priority 0; policy accept; }' && "
             "nft add rule inet ecom_imds out ip daddr 169.254.169.254 meta skuid != 0 reject")


def render_cloud_init(host_key_private: str, host_key_public: str) -> str:
    """User data that installs the pinned SSH host key and blocks IMDS for non-root users."""
    return render("host/cloud-init.yaml.j2",
                  host_key_private=host_key_private.strip(),
                  host_key_public=host_key_public.strip(),
                  imds_rule=IMDS_RULE)
