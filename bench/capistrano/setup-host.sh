#!/bin/bash
# bench/capistrano.py, as root on each ecom-platform host before Capistrano's first deploy (not timed: it is
# provisioning, as the project's own deploy-user/puma-unit steps are): Capistrano's deploy folder, its puma
# unit on its own port, the deploy user's login for Capistrano's key, and the one sudo rule its restart needs.
# The benchmark puts the CAP_* assignments above this text; everything else here is fixed.
set -euo pipefail
: "${CAP_USER:?}" "${CAP_DEPLOY_TO:?}" "${CAP_UNIT:?}" "${CAP_PORT:?}" "${CAP_PUBLIC_KEY:?}"
: "${CAP_PUMA_WORKERS:?}" "${CAP_PUMA_THREADS:?}" "${CAP_RAILS_ENV:?}"
CONF_DIR=/etc/ecom-cap-bench

home=$(getent passwd "$CAP_USER" | cut -d: -f6)
if [ -z "$home" ] || [ ! -d "$home" ]; then
  echo "cap-bench: user $CAP_USER has no home folder (the project's deploy-user step makes it)" >&2
  exit 1
fi
group=$(id -gn "$CAP_USER")

# The deploy folder belongs to the deploy user, as Capistrano expects (it never uses sudo to write there).
install -d -o root -g root -m 0755 "$(dirname "$CAP_DEPLOY_TO")"
install -d -o "$CAP_USER" -g "$group" -m 0755 "$CAP_DEPLOY_TO"

# Capistrano logs in as the deploy user with the benchmark's own key: no shell tricks, no forwarding.
install -d -o "$CAP_USER" -g "$group" -m 0700 "$home/.ssh"
keys="$home/.ssh/authorized_keys"
line="restrict $CAP_PUBLIC_KEY"
if ! grep -qxF -- "$line" "$keys" 2>/dev/null; then
  printf '%s\n' "$line" >> "$keys"
fi
chown "$CAP_USER:$group" "$keys"
chmod 0600 "$keys"

# puma as Capistrano setups usually run it: a unit of its own, binding its own TCP port (no socket unit),
# restarted by the deploy with `sudo systemctl restart`; same workers and threads as the project's puma.
install -d -o root -g root -m 0755 "$CONF_DIR"
cat > "$CONF_DIR/puma.rb" <<PUMA_EOF
# puma for the Capistrano benchmark (bench/capistrano/setup-host.sh)
directory "$CAP_DEPLOY_TO/current"
environment "$CAP_RAILS_ENV"
bind "tcp://0.0.0.0:$CAP_PORT"
pidfile "$CAP_DEPLOY_TO/shared/tmp/pids/puma.pid"
state_path "$CAP_DEPLOY_TO/shared/tmp/pids/puma.state"
threads $CAP_PUMA_THREADS, $CAP_PUMA_THREADS
workers $CAP_PUMA_WORKERS
PUMA_EOF
chmod 0644 "$CONF_DIR/puma.rb"

cat > "/etc/systemd/system/$CAP_UNIT" <<UNIT_EOF
# puma for the Capistrano benchmark (bench/capistrano/setup-host.sh)
[Unit]
Description=puma for the Capistrano benchmark ($CAP_DEPLOY_TO)
After=network.target
ConditionPathExists=$CAP_DEPLOY_TO/current

[Service]
Type=simple
User=$CAP_USER
Group=$group
WorkingDirectory=$CAP_DEPLOY_TO/current
Environment=RAILS_ENV=$CAP_RAILS_ENV RACK_ENV=$CAP_RAILS_ENV LANG=C.UTF-8
ExecStart=/usr/bin/bundle exec puma -C $CONF_DIR/puma.rb
Restart=always
RestartSec=2
UNIT_EOF
systemctl daemon-reload

# The one command the deploy user may run as root.
rule=$(mktemp)
trap 'rm -f "$rule"' EXIT
printf '%s ALL=(root) NOPASSWD: /usr/bin/systemctl restart %s\n' "$CAP_USER" "$CAP_UNIT" > "$rule"
visudo -cqf "$rule"
install -o root -g root -m 0440 "$rule" /etc/sudoers.d/ecom-cap-bench
echo "cap-bench: $(hostname): $CAP_DEPLOY_TO for $CAP_USER, $CAP_UNIT on port $CAP_PORT"
