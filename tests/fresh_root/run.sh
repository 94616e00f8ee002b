#!/usr/bin/env bash
# The fresh-machine check: a clean clone of one commit, in an untouched Debian bookworm root, runs the README's
# set-up and tests there. Nothing an earlier run left on this machine (folders under /run, packages, a warm moto,
# users, the venv) is visible inside, so a test that relies on such leftovers fails here.
#
#   tests/fresh_root/run.sh [REV]        REV defaults to HEAD; needs root and debootstrap (make test-fresh-root)
#   PYTEST_ARGS='tests/fleet -x' tests/fresh_root/run.sh     while investigating: what the last step runs
#   FRESH_ROOT_KEEP=1 ...                                    keeps the root's files (logs, fleet state) afterwards
#   FRESH_ROOT_RUN='.venv/bin/python bench/noop.py' ...      runs that command (as root, in the clone) instead of the
#                                                            tests: benchmarks isolated from other runs on the machine
#
# Inside the root, in this order:
#   1. root: `make setup`       the README's set-up (Debian packages, venv) from nothing
#   2. an ordinary user: `make test-fast`   the quick tier needs no root
#   3. root: `make test`        every tier, the fleet included
# The root is a minbase debootstrap plus what the README asks a machine to have (make, git, python3-venv); it is
# built once into a tarball (cached, keyed by its recipe) and every run unpacks a fresh copy of it.
set -euo pipefail

say() { printf '[fresh-root] %s %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { say "error: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (debootstrap, chroot, mounts)"
command -v debootstrap >/dev/null || die "needs debootstrap (apt-get install debootstrap)"

REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
REV=$(git -C "$REPO" rev-parse --verify "${1:-HEAD}^{commit}")
SUITE=bookworm
# The machine's own Debian mirror (deb822 sources first, then the one-line form), so the root sees the same archive.
MIRROR=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
[[ -n $MIRROR ]] || MIRROR=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# What the README says a machine needs before its two commands.
BASE_PACKAGES=make,git,python3,python3-venv,ca-certificates
CACHE=${ECOM_FRESH_ROOT_CACHE:-/var/cache/ecom-infra/fresh-root}
recipe=$(printf '%s\n' "$SUITE" "$MIRROR" "$BASE_PACKAGES" minbase hosts | sha256sum | cut -c1-16)
TARBALL=$CACHE/$SUITE-minbase-$recipe.tar

mkdir -p "$CACHE"
if [[ ! -f $TARBALL ]]; then
    say "building the pristine $SUITE root from $MIRROR (once; about 1.5 min)"
    build=$(mktemp -d "$CACHE/build.XXXXXX")
    if ! debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$build/root" "$MIRROR" \
            >"$build/debootstrap.log" 2>&1; then
        tail -n 20 "$build/debootstrap.log" >&2
        rm -rf "$build"
        die "debootstrap failed (log above)"
    fi
    # debootstrap writes no /etc/hosts; every installed Debian has one, and `localhost` resolves only through it.
    printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$build/root/etc/hosts"
    tar -C "$build/root" --numeric-owner -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    rm -rf "$build"
    find "$CACHE" -maxdepth 1 -name "$SUITE-minbase-*.tar" ! -name "${TARBALL##*/}" -delete  # older recipes
fi

WORK=$(mktemp -d /var/tmp/ecom-fresh-root.XXXXXX)
# A cgroup of its own, entered with a cgroup namespace: the fleet inside names its cgroups as a fleet on this
# machine does (ecom-fleet-<name>), and neither may see, let alone kill, the other's.
cgroup2=$(findmnt -rn -t cgroup2 -o TARGET | head -n1)    # /sys/fs/cgroup, or .../unified in hybrid mode
[[ -n $cgroup2 ]] || die "needs cgroup v2 mounted (the fleet tracks its processes with it)"
CGROUP=$cgroup2/${WORK##*/}
mkdir "$CGROUP"
cleanup() {
    find "$CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null || say "cgroup $CGROUP still busy; left in place" >&2
    if [[ -n ${FRESH_ROOT_KEEP:-} ]]; then
        say "kept $WORK (FRESH_ROOT_KEEP): the root's files, for a post-mortem" >&2
        return
    fi
    # Mounts live in the private mount namespace below and vanish with it; a stray one must not let rm cross it.
    if findmnt -rn -o TARGET | grep -q "^$WORK/"; then
        say "mounts left under $WORK; not removing it" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
ROOT=$WORK/root
mkdir "$ROOT"
say "unpacking an untouched copy of ${TARBALL##*/}"
tar -C "$ROOT" --numeric-owner -xpf "$TARBALL"

say "clean clone of ${REV:0:12} into /src/ecom-infra"
git clone -q --no-local --no-checkout "$REPO" "$ROOT/src/ecom-infra"
git -C "$ROOT/src/ecom-infra" checkout -q --detach "$REV"

# The machine's network settings, which a fresh machine of this kind has too: name servers and the CA bundle that
# reaches the package registries.
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    cp /etc/ssl/certs/ca-certificates.crt "$ROOT/usr/local/share/ca-certificates/machine-bundle.crt"
    chroot "$ROOT" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the root"
fi
chroot "$ROOT" useradd --create-home --shell /bin/bash tester

# Only what a person's shell would carry: no venv, no AWS or Pulumi variables from this machine.
env_args=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb
          CI="${CI:-}")
while IFS='=' read -r name value; do
    env_args+=("$name=$value")
done < <(env | grep -E '^(PIP_DEFAULT_TIMEOUT|PIP_INDEX_URL|PIP_EXTRA_INDEX_URL|https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY)=' || true)

inside=$(cat <<'SCRIPT'
set -euo pipefail
echo $$ >"$CGROUP/cgroup.procs"     # everything below is born in the run's cgroup
# The root becomes / of this mount namespace (pivot_root, not chroot): a process that enters a namespace made inside
# (nsenter --mount, as the HAProxy tests do) must land in this root, not in the machine's.
mount --bind "$ROOT" "$ROOT"
mount --make-private "$ROOT"
mount -t proc proc "$ROOT/proc"
mount --rbind /sys "$ROOT/sys"
mount --rbind /dev "$ROOT/dev"
mount -t tmpfs -o mode=0755 tmpfs "$ROOT/run"      # a fresh /run: nothing made there by an earlier boot or run
mount -t tmpfs -o mode=1777 tmpfs "$ROOT/tmp"
mount -t tmpfs -o mode=1777 tmpfs "$ROOT/dev/shm"
cd "$ROOT"
mkdir .machine
pivot_root . .machine
cd /
umount -l /.machine
rmdir /.machine
step() {
    local started=$SECONDS
    printf '[fresh-root] %s %s\n' "$(date -u +%H:%M:%S)" "$1: $2"
    shift 2
    "$@"
    printf '[fresh-root] %s done in %d s\n' "$(date -u +%H:%M:%S)" "$((SECONDS - started))"
}
clean_env() { /usr/bin/env -i "${ENV_ARGS[@]}" "$@"; }
step "root" "make setup (this machine's network: Debian packages, PyPI)" \
    clean_env bash -c 'cd /src/ecom-infra && make setup'
# The tests get a network namespace of their own: loopback and the namespaces they make, nothing outside (proof
# that they need no registry), and no clash with bridges or firewall rules of a run on this machine. Users are
# not namespaced: a root test on this machine that kills "every process of uid N" at the same time can hit this
# run's processes (CI runs the two one after the other).
tests() {
    ip link set lo up
    umount -R /sys
    mount -t sysfs sysfs /sys                   # /sys/class/net of this namespace, not the machine's
    mount -t cgroup2 cgroup2 /sys/fs/cgroup      # rooted at the run's cgroup (cgroup namespace)
    if [[ -n $FRESH_ROOT_RUN ]]; then
        step "root" "$FRESH_ROOT_RUN" clean_env bash -c 'cd /src/ecom-infra && eval "$1"' run "$FRESH_ROOT_RUN"
        return
    fi
    [[ -n $PYTEST_ARGS ]] || step "user tester" "make test-fast" \
        clean_env runuser -u tester -- env HOME=/home/tester bash -c 'cd /src/ecom-infra && make test-fast'
    step "root" "make test${PYTEST_ARGS:+ PYTEST_ARGS=$PYTEST_ARGS}" \
        clean_env bash -c 'cd /src/ecom-infra && make test PYTEST_ARGS="$1"' make-test "${PYTEST_ARGS:-}"
}
unshare --net --cgroup bash -c "$(declare -p ENV_ARGS); PYTEST_ARGS=${PYTEST_ARGS@Q}; FRESH_ROOT_RUN=${FRESH_ROOT_RUN@Q}; $(declare -f step clean_env tests); set -euo pipefail; tests"
SCRIPT
)
started=$SECONDS
# A private mount and PID namespace: every mount and every process of the run ends with it, whatever happens.
ENV_ARGS_Q=$(declare -p env_args | sed 's/^declare -a env_args=/ENV_ARGS=/')
ROOT="$ROOT" CGROUP="$CGROUP" PYTEST_ARGS="${PYTEST_ARGS:-}" FRESH_ROOT_RUN="${FRESH_ROOT_RUN:-}" unshare --mount --propagation private --pid --fork --mount-proc \
    bash -c "$ENV_ARGS_Q; $inside"
say "passed in $((SECONDS - started)) s (${REV:0:12})"
