#!/bin/bash
# Boots one fleet host: a system container made of namespaces, an overlay root and systemd.
#
#   host-boot.sh outer CGROUP NETNS HOSTDIR HOSTNAME   (run by `python -m fleet up`, one per host)
#   host-boot.sh inner HOSTDIR HOSTNAME OUTER_MNT_NS   (run by the outer stage as PID 1 of the new PID namespace)
#
# outer: joins the host's cgroup (so `down` can kill everything with one write to cgroup.kill), then enters
#        the host's network namespace and creates PID, mount, UTS and cgroup namespaces. --kill-child ties the
#        host's life to the unshare process: if it is killed, the whole PID namespace dies with it.
# inner: checks it is PID 1 in a mount namespace of its own (not OUTER_MNT_NS, the one `outer` ran in), mounts
#        the private root (overlay: lower = this machine's /, upper/work = HOSTDIR), gives it its own /proc, /sys,
#        /dev, /run, /tmp, checks it really is the prepared private root, and execs systemd chrooted into it.
#        It never execs systemd on the machine's shared root: systemd-tmpfiles there would wipe the machine's /tmp.
#        chroot, not pivot_root: pivot_root run by mistake in the machine's mount namespace would move every
#        process of the machine into the host's root; chroot only ever moves this one process.
# Every step is a fresh mount in a namespace that dies with the host, so an interrupted boot leaves nothing
# mounted on the machine; re-running it after `down` starts clean.
set -euo pipefail

DROPPED_CAPS=-sys_module,-sys_time,-sys_rawio,-syslog,-wake_alarm,-block_suspend,-mac_admin,-mac_override,-sys_pacct

say() { printf '[host-boot] %s: %s\n' "${HOSTNAME_WANTED:-?}" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

outer() {
    local cgroup=$1 netns=$2 hostdir=$3 name=$4
    HOSTNAME_WANTED=$name
    [[ -d $cgroup ]] || die "cgroup $cgroup is missing"
    [[ -e /run/netns/$netns ]] || die "network namespace $netns is missing"
    echo $$ >"$cgroup/cgroup.procs"
    local outer_mnt_ns
    outer_mnt_ns=$(readlink /proc/self/ns/mnt)
    exec ip netns exec "$netns" \
        unshare --pid --kill-child --mount --uts --cgroup --propagation private \
        -- "$0" inner "$hostdir" "$name" "$outer_mnt_ns"
}

# Device nodes a host needs; the machine's /dev is never shown to a host (its tmpfiles would act on it).
make_dev() {
    local dev=$1 console_log=$2
    mount -t tmpfs -o mode=755,nosuid,size=4m tmpfs "$dev"
    mknod -m 666 "$dev/null" c 1 3
    mknod -m 666 "$dev/zero" c 1 5
    mknod -m 666 "$dev/full" c 1 7
    mknod -m 666 "$dev/random" c 1 8
    mknod -m 666 "$dev/urandom" c 1 9
    mknod -m 666 "$dev/tty" c 5 0
    # /dev/console: systemd (PID 1) logs there; it is the host's console.log in the state dir.
    touch "$dev/console"
    mount --bind "$console_log" "$dev/console"
    mkdir -m 755 "$dev/pts" "$dev/shm" "$dev/mqueue"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5,nosuid,noexec devpts "$dev/pts"
    ln -s pts/ptmx "$dev/ptmx"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$dev/shm"
    mount -t mqueue -o nosuid,nodev,noexec mqueue "$dev/mqueue"
    ln -s /proc/self/fd "$dev/fd"
    ln -s /proc/self/fd/0 "$dev/stdin"
    ln -s /proc/self/fd/1 "$dev/stdout"
    ln -s /proc/self/fd/2 "$dev/stderr"
}

# /proc and /sys: the kernel-wide knobs are read-only in a host, so its systemd (sysctl, tmpfiles) cannot
# reconfigure this machine; the network sysctls belong to the host's own network namespace and stay writable.
make_proc_sys() {
    local root=$1
    mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
    mount --bind "$root/proc/sys" "$root/proc/sys"
    mount --bind "$root/proc/sys/net" "$root/proc/sys/net"
    mount -o remount,bind,ro "$root/proc/sys"
    if [[ -e $root/proc/sysrq-trigger ]]; then  # absent when the kernel is built without magic SysRq
        mount --bind "$root/proc/sysrq-trigger" "$root/proc/sysrq-trigger"
        mount -o remount,bind,ro "$root/proc/sysrq-trigger"
    fi
    # A fresh sysfs in this network namespace lists only the host's own interfaces.
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
    # The cgroup namespace makes this mount's root the host's own cgroup: systemd manages only its subtree.
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"
}

inner() {
    local hostdir=$1 name=$2 outer_mnt_ns=$3
    HOSTNAME_WANTED=$name
    local root=$hostdir/root
    # Guards, before anything is mounted: every mount below must land in the host's own namespace only.
    [[ $$ -eq 1 ]] || die "inner stage must be PID 1 of a new PID namespace (is $$)"
    [[ $(readlink /proc/self/ns/mnt) != "$outer_mnt_ns" ]] || die "inner stage must run in a new mount namespace"
    [[ $(findmnt -n -o PROPAGATION /) == private ]] || die "inner stage needs private mount propagation"
    [[ -d $root && -d $hostdir/upper && -d $hostdir/work ]] || die "$hostdir is not a prepared host dir"
    hostname "$name"
    # This namespace started as a copy of the machine's, with every fleet's /run/netns/* bind mounts; a copy
    # keeps that network namespace (and its veth) alive after its own fleet deleted it, so drop them here.
    local netns_mount
    while read -r netns_mount; do
        umount -l "$netns_mount"
    done < <(findmnt -rn -o TARGET | grep '^/run/netns/.' || true)
    mount -t overlay overlay -o "lowerdir=/,upperdir=$hostdir/upper,workdir=$hostdir/work" "$root"
    make_proc_sys "$root"
    make_dev "$root/dev" "$hostdir/console.log"
    mount -t tmpfs -o mode=755,nosuid,nodev,size=20% tmpfs "$root/run"
    mount -t tmpfs -o mode=1777,nosuid,nodev,size=20% tmpfs "$root/tmp"
    # The fleet's state (every host's upper layer) is in the lower layer too: hide it from the host.
    if [[ -d $root/var/lib/ecom-fleet ]]; then
        mount -t tmpfs -o ro,mode=755,size=4k tmpfs "$root/var/lib/ecom-fleet"
    fi
    # Last check before systemd: the new root must be this host's overlay, never the machine's root.
    [[ $(stat -f -c %T "$root") == overlayfs ]] || die "refusing to boot systemd: $root is not an overlay"
    [[ $(stat -c %d "$root") != "$(stat -c %d /)" ]] || die "refusing to boot systemd: $root is the machine's root"
    [[ -f $root/etc/ecom-fleet-host ]] || die "refusing to boot systemd: $root is not a prepared fleet host root"
    say "booting systemd"
    # container=: systemd skips what a container must not do. The bounding set drops capabilities that only
    # act on the whole machine (clock, kernel modules, raw I/O, kernel log), as systemd-nspawn does.
    exec chroot "$root" /usr/bin/env -i container=ecom-fleet PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        /usr/bin/setpriv --bounding-set "$DROPPED_CAPS" \
        /lib/systemd/systemd --system --show-status=no
}

case ${1:-} in
outer) shift; [[ $# -eq 4 ]] || die "usage: $0 outer CGROUP NETNS HOSTDIR HOSTNAME"; outer "$@" ;;
inner) shift; [[ $# -eq 3 ]] || die "usage: $0 inner HOSTDIR HOSTNAME OUTER_MNT_NS"; inner "$@" ;;
*) die "usage: $0 outer|inner ..." ;;
esac
