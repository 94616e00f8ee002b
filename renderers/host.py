"""Host bootstrap: the cloud-init user data every EC2 host boots with."""
from __future__ import annotations

from . import render


def render_cloud_init(host_key_private: str, host_key_public: str) -> str:
    """User data that installs the pinned SSH host key and blocks IMDS for non-root users."""
    return render("host/cloud-init.yaml.j2",
                  host_key_private=host_key_private.strip(),
                  host_key_public=host_key_public.strip())
