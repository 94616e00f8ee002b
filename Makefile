# The two commands a person needs: `make up` (the platform on the local default) and `make test`.
# Both set everything up first (Debian packages when run as root, then the Python venv).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STACK ?= staging
# Host programs the tests and the local fleet run for real. The fleet's hosts are overlays of this machine's root,
# so what an EC2 Debian image has and the hosts use comes from here too (dbus: systemctl as a non-root user;
# cloud-init boots the instance hosts from their user data; nftables: the user data's metadata-service rule).
APT_PACKAGES := shellcheck haproxy keepalived nginx-light openssh-server openssh-client iproute2 iptables \
	git curl sudo socat ruby ruby-rails puma ruby-sprockets-rails ruby-sqlite3 ruby-bootsnap bundler python3-boto3 systemd dbus \
	util-linux procps openssl cloud-init nftables
# Debian's Capistrano, for bench/capistrano.py only (it installs it too, but a fresh root has no network then).
BENCH_APT_PACKAGES := capistrano

.PHONY: setup setup-system setup-python up down lint test test-fast test-fresh-root plan bench clean tools

setup: setup-system setup-python

# Debian packages. Services must not start on this machine when installed (a policy-rc.d
# that says "no" while apt runs): the fleet's hosts start their own copies.
setup-system:
	@missing=$$(for p in $(APT_PACKAGES) $(BENCH_APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "[setup] Debian packages present"; \
	elif [ "$$(id -u)" != 0 ]; then echo "[setup] missing Debian packages (run as root to install): $$missing" >&2; exit 1; \
	else echo "[setup] installing:" $$missing; \
	  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d; \
	  trap 'rm -f /usr/sbin/policy-rc.d' EXIT; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	  if printf '%s\n' $$missing | grep -qx cloud-init; then mkdir -p /etc/cloud && touch /etc/cloud/cloud-init.disabled; \
	    echo "[setup] cloud-init is for the fleet's hosts: disabled on this machine (/etc/cloud/cloud-init.disabled)"; fi; fi

setup-python: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@echo "[setup] python venv $(VENV)"
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

# The local stack on the local fleet (root): hosts, moto, git origin, deploy, endpoint on the last line.
up: setup
	@$(PY) -m fleet.local up

down: setup-python
	@$(PY) -m fleet.local down

# The lint gate, first in both test targets (seconds): ruff on every Python file, mypy on the program (pyproject.toml).
# No caches: the tree may be read-only to the user running it (the fresh-root check runs test-fast as a user in
# root's clone), and a cold run costs about 4 s of CPU.
lint: setup-python
	@$(VENV)/bin/ruff check -q --no-cache .
	@$(VENV)/bin/mypy --cache-dir=/dev/null
	@echo "[lint] ruff and mypy clean"

test: setup lint
	@$(PY) -m pytest $(PYTEST_ARGS)

# The README's set-up and tests, from a clean clone of HEAD, in an untouched Debian root (root; CI runs it).
test-fresh-root:
	@command -v debootstrap >/dev/null || { echo "[setup] installing debootstrap"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null \
	  || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	       --no-install-recommends debootstrap >/dev/null; }; }
	@tests/fresh_root/run.sh HEAD

# The quick loop: no root, namespaces or fleet (settings, plans, renderers, lint, release verbs on moto).
test-fast: setup lint
	@$(PY) -m pytest -m "not fleet and not root" -q

plan: setup-python
	@$(VENV)/bin/ecom-deploy plan --stack $(STACK)

bench: setup
	@$(PY) bench/plan.py

# The Pulumi engine (CLI, Python language host, pulumi-command provider), built from Go modules
# into .tools/bin by tools/pulumi/build.sh (pinned in tools/pulumi/versions.env, cached).
# A pulumi already on PATH (a person's own install) is used as it is, unless PULUMI_FROM_PATH=0.
tools:
	@if [ "$${PULUMI_FROM_PATH:-1}" != 0 ] && command -v pulumi >/dev/null; then \
	  echo "[tools] using pulumi on PATH: $$(command -v pulumi) (PULUMI_FROM_PATH=0 builds .tools/bin)"; \
	else tools/pulumi/build.sh; fi

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
