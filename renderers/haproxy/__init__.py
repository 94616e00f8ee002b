"""The HAProxy pair: haproxy.cfg, keepalived with an Elastic IP, and rolling-restart helpers.

Plain values in, text and `Step`s out (no Pulumi here). `HaproxyPair` turns each Step into a
remote command on a node; the steps need a root connection (every script checks `id -u`).

What runs on a node, in order (`haproxy_node_steps`):
  haproxy-packages         haproxy, keepalived, python3-boto3 and the haproxy user, when missing
  haproxy-tls-cert         (only with TLS) the pem from stdin, mode 600, reload if it changed
  haproxy-config           haproxy.cfg: validate beside the live file, swap, reload on change
  keepalived-notify-master the script that moves the Elastic IP to this node
  keepalived-config        keepalived.conf: validate (`keepalived -t`), swap, reload on change
  keepalived-eip-held      (intended master only) wait until an instance holds the Elastic IP
Rolling restarts drain through HAProxy's agent-check: `agent_step` installs the agent on each app server and
`drained` wraps its publish. (Not steps on the nodes: after a failed publish the engine would never run a
`ready` step there.)

Paths and service commands live in `HaproxyLayout` / `KeepalivedLayout` so tests can point the
same scripts at temp files and at processes they started, without fake binaries.

Modules: `spec` (the pair's inputs and their checks), `layout` (where files live on a host, how
services are driven), `haproxy_cfg` (haproxy.cfg and its install scripts), `keepalived` (keepalived.conf,
the takeover script, the wait for the Elastic IP), `node` (a node's steps in order), `agent` (the
agent-check on the app servers and the drained publish).
"""
