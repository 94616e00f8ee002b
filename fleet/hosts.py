"""Fleet hosts: system containers made of namespaces, an overlay root and systemd as PID 1.

A host's root is an overlay: lower = this machine's `/`, upper = `<state>/hosts/<host>/upper`. Before boot,
`prepare_root` writes the host's differences straight into the (not yet mounted) upper layer: hostname,
machine-id and the unit policy (only sshd and systemd's own units start; nginx/haproxy/keepalived stay
installable and enable-able). `host-boot.sh` then mounts it in the host's own namespaces and execs systemd.

An EC2 instance's host boots as the instance does: the fleet plays the hypervisor and the image, cloud-init
does the rest. It gets a NoCloud seed (`/var/lib/cloud/seed/nocloud/`: the plan's user data, and meta-data
with the instance id and the key pair's public key) and the image's cloud-init config
(`CLOUD_CFG`, what Debian's AMIs carry in `/etc/cloud/cloud.cfg.d`); cloud-init installs the pinned host key,
creates `admin` with the key pair and passwordless sudo, and applies the user data. A fleet-made host (the
git host) has no user data: the fleet writes its only SSH host key and its `admin` user itself.

Every process the fleet starts lives in one cgroup tree `<cgroup2>/ecom-fleet-<fleet>/`: `host-<name>` per
host, `moto`, `eip`, `imds`. `kill_all` writes `cgroup.kill` there, which ends every process of the fleet, including
ones a host's systemd forked, without needing to know a single pid.

Why over ~400 lines: one host's whole life (root, seed, boot, wait, stop) on the same state folder.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

from .network import FleetError
from .spec import FleetSpec, HostSpec, state_dir

BOOT_SCRIPT = Path(__file__).with_name("host-boot.sh")
CGROUP_PREFIX = "ecom-fleet-"
MARKER = "etc/ecom-fleet-host"  # host-boot.sh refuses to exec systemd on a root without it
SYSTEMD_DIR = "etc/systemd/system"
# Units that stay enabled from this machine's /etc/systemd/system/*.wants: only sshd. systemd's own essentials
# (journald, logind, dbus, tmpfiles...) are wanted from /lib/systemd/system and are untouched.
KEEP_ENABLED = {"multi-user.target.wants": {"ssh.service": "/lib/systemd/system/ssh.service"}}
# An instance host also runs cloud-init's four stages (Debian's package enables them here; its generator pulls
# cloud-init.target into the boot when ds-identify finds the NoCloud seed).
CLOUD_INIT_ENABLED = {"cloud-init.target.wants": {
    unit: f"/lib/systemd/system/{unit}"
    for unit in ("cloud-init-local.service", "cloud-init.service", "cloud-config.service", "cloud-final.service")}}
SEED_DIR = "var/lib/cloud/seed/nocloud"
# The image's cloud-init config (an AMI's /etc/cloud/cloud.cfg.d). Lists replace Debian's cloud.cfg lists whole.
CLOUD_CFG = """\
# Written by the local fleet: the instance image's cloud-init config (as Debian's AMIs carry one).
# Only the NoCloud seed the fleet writes; no fallback to the None source, so a host without a seed fails loudly.
datasource_list: [NoCloud]
# The hypervisor (the fleet) configures eth0 from outside; cloud-init's fallback DHCP config must not touch it.
network: {config: disabled}
# Debian's AMIs name the default user admin; it gets the key pair's key (meta-data public-keys).
system_info:
  default_user:
    name: admin
    lock_passwd: true
    gecos: Debian
    groups: [adm, sudo]
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
# Module lists without the modules that have nothing to act on in a fleet host: disks and file systems
# (growpart, resizefs, disk_setup, mounts: no block devices), consoles and locales (keyboard, locale: the
# machine's locale is the image's; rsyslog, byobu, keys-to-console), other clouds' and tools' agents (snap,
# ssh-import-id, fan, landscape, lxd, puppet, chef, mcollective, salt-minion, rmc, rightscale), grub-dpkg (no
# boot loader), ntp and timezone (the machine's clock), ca-certs, hotplug, phone-home, power-state-change.
# What the program's user data and EC2 images use stays: bootcmd, write-files, hostname, users, ssh keys, apt,
# runcmd, packages, scripts, final message. Measured: the dropped modules cost ~0.2 s per boot (grub-dpkg
# 0.11 s, locale 0.05 s); most of cloud-init's ~2-5 s is the Python start of its four stages.
cloud_init_modules: [migrator, seed_random, bootcmd, write-files, set_hostname, update_hostname,
                     update_etc_hosts, users-groups, ssh]
cloud_config_modules: [set-passwords, apt-pipelining, apt-configure, disable-ec2-metadata, runcmd]
cloud_final_modules: [package-update-upgrade-install, write-files-deferred, scripts-vendor, scripts-per-once,
                      scripts-per-boot, scripts-per-instance, scripts-user, ssh-authkey-fingerprints,
                      final-message]
"""
# Units masked in every host: they act on the machine rather than the host (sysctl, kernel file systems,
# modules, udev, clock), cannot work in a container (gettys), or are machine chores (apt, scrubbing) or
# services no host of this platform runs (postgresql). nginx, haproxy and keepalived are only disabled
# (left out of the copied *.wants), never masked: deploy scripts enable them.
MASKED_UNITS = (
    "apt-daily.timer", "apt-daily-upgrade.timer", "console-getty.service", "container-getty@.service",
    "dev-hugepages.mount", "dpkg-db-backup.timer", "e2scrub_all.timer", "e2scrub_reap.service",
    "fstrim.timer", "getty.target", "getty@.service", "kmod-static-nodes.service", "man-db.timer",
    "postgresql.service", "postgresql@.service", "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount", "serial-getty@.service", "sys-fs-fuse-connections.mount",
    "sys-kernel-config.mount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount", "systemd-binfmt.service",
    "systemd-modules-load.service", "systemd-pstore.service", "systemd-sysctl.service",
    "systemd-timesyncd.service", "systemd-udev-settle.service", "systemd-udev-trigger.service",
    "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
)
ADMIN = "admin"
SSHD_DROPIN = """\
# Written by the local fleet: the spec's ed25519 key is this host's only host key; keys only, no root.
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
"""


def say(host: str, message: str) -> None:
    print(f"[fleet] {host}: {message}", flush=True)


# ---- paths and cgroups -----------------------------------------------------------------------------------

def host_dir(spec: FleetSpec, host: HostSpec) -> Path:
    return state_dir(spec.name) / "hosts" / host.name


def cgroup2_root(mountinfo: str = "/proc/self/mountinfo") -> Path:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified in hybrid mode)."""
    for line in Path(mountinfo).read_text().splitlines():
        fields = line.split()
        if fields[fields.index("-") + 1] == "cgroup2":
            return Path(fields[4])
    raise FleetError("cgroup v2 is not mounted on this machine (needed to track and stop fleet processes)")


def fleet_cgroup(name: str) -> Path:
    return cgroup2_root() / f"{CGROUP_PREFIX}{name}"


def host_cgroup(name: str, host: str) -> Path:
    return fleet_cgroup(name) / f"host-{host}"


def cgroup_pids(cgroup: Path) -> list[int]:
    """Every process in a cgroup and its descendants."""
    pids: list[int] = []
    if not cgroup.is_dir():
        return pids
    for directory, _dirs, _files in os.walk(cgroup):
        try:
            pids += [int(p) for p in Path(directory, "cgroup.procs").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # a subgroup vanished while we walked
    return pids


def populated(cgroup: Path) -> bool:
    try:
        return "populated 1" in (cgroup / "cgroup.events").read_text()
    except FileNotFoundError:
        return False


def spawn(argv: list[str], cgroup: Path, log: Path, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a daemon that outlives the caller: own session, stdio to `log`, born inside `cgroup`."""
    cgroup.mkdir(parents=True, exist_ok=True)
    procs = cgroup / "cgroup.procs"

    def enter_cgroup() -> None:  # runs in the child before exec, so nothing escapes the cgroup
        procs.write_text(str(os.getpid()))

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, close_fds=True, cwd=cwd,
                                env=env, start_new_session=True, preexec_fn=enter_cgroup)  # noqa: PLW1509
    finally:
        os.close(fd)


def kill_all(name: str, timeout: float = 10.0) -> int:
    """Kill every process of the fleet and remove its cgroups; returns how many processes there were."""
    return kill_cgroup(fleet_cgroup(name), timeout)


def kill_host(name: str, host: str, timeout: float = 10.0) -> int:
    """Kill one host (its systemd and everything it runs) at once, as pulling an instance's power would;
    its root disk (the upper layer) and network namespace stay. Returns how many processes there were."""
    return kill_cgroup(host_cgroup(name, host), timeout)


def kill_cgroup(top: Path, timeout: float = 10.0) -> int:
    """Kill every process in a cgroup tree and remove its cgroups; returns how many processes there were."""
    if not top.is_dir():
        return 0
    count = len(cgroup_pids(top))
    has_kill = (top / "cgroup.kill").exists()  # Linux >= 5.14
    if has_kill:
        (top / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + timeout
    while populated(top):
        if not has_kill:  # older kernels: kill what is there until nothing is left (forks race the loop)
            for pid in cgroup_pids(top):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise FleetError(f"processes in {top} did not die within {timeout:.0f} s")
        time.sleep(0.02)
    for directory, _dirs, _files in os.walk(top, topdown=False):
        os.rmdir(directory)  # a cgroup dir holds only kernel files: rmdir, never rm -r
    return count


# ---- the host's root: everything it differs from the machine by --------------------------------------------

def _write(path: Path, text: str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".fleet-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, mode)  # the umask must not loosen or tighten it
    os.chown(tmp, uid, gid)
    os.replace(tmp, path)


def _whiteout(path: Path) -> None:
    """Hide a lower-layer file in the overlay (a 0/0 character device is overlayfs' whiteout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def _opaque_dir(path: Path) -> None:
    """A directory that hides the lower layer's directory of the same name."""
    path.mkdir(parents=True, exist_ok=True)
    os.setxattr(path, "trusted.overlay.opaque", b"y")


def _symlink(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


def write_identity(spec: FleetSpec, host: HostSpec, upper: Path) -> None:
    _write(upper / MARKER, f"fleet={spec.name}\nhost={host.name}\n")
    _write(upper / "etc/hostname", f"{host.name}\n")
    # Deterministic but unique per host; the machine's own machine-id must not be shared by every host.
    _write(upper / "etc/machine-id", hashlib.sha256(f"{spec.name}/{host.name}".encode()).hexdigest()[:32] + "\n",
           mode=0o444)
    peers = "".join(f"{h.address}\t{h.name}\n" for h in spec.hosts)
    _write(upper / "etc/hosts", f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n{peers}")
    # Nothing in this machine's fstab belongs in a host; an empty one keeps the fstab generator quiet.
    _write(upper / "etc/fstab", "# local fleet host: no file systems of its own\n")


def write_ssh(host: HostSpec, upper: Path, lower: Path) -> None:
    ssh = upper / "etc/ssh"
    for old in sorted((lower / "etc/ssh").glob("ssh_host_*")):
        if not old.name.startswith("ssh_host_ed25519_key"):
            _whiteout(ssh / old.name)  # the machine's other host keys must not exist in a host
    _write(ssh / "ssh_host_ed25519_key", host.host_key, mode=0o600)
    _write(ssh / "ssh_host_ed25519_key.pub", f"{host.host_public_key} root@{host.name}\n")
    _write(ssh / "sshd_config.d/ecom-fleet.conf", SSHD_DROPIN)


def _free_id(*tables: list[list[str]]) -> int:
    used = {int(row[2]) for table in tables for row in table if len(row) > 2 and row[2].isdigit()}
    return next(n for n in range(1000, 60000) if n not in used)


def _rows(path: Path) -> list[list[str]]:
    return [line.split(":") for line in path.read_text().splitlines() if line and not line.startswith(ADMIN + ":")]


def write_admin(host: HostSpec, upper: Path, lower: Path) -> int:
    """The `admin` user: the spec's authorized keys, no password, passwordless sudo. Returns its uid.

    The account files are copies of the machine's plus one line each (what useradd would write); any
    `admin` the machine may have is replaced so the host's one is always ours.
    """
    etc_l, etc_u = lower / "etc", upper / "etc"
    passwd, group = _rows(etc_l / "passwd"), _rows(etc_l / "group")
    uid = _free_id(passwd, group)
    shadow_gid = next((int(r[2]) for r in group if r[0] == "shadow"), 0)
    home = f"/home/{ADMIN}"
    passwd.append([ADMIN, "x", str(uid), str(uid), "local fleet admin", home, "/bin/bash"])
    group.append([ADMIN, "x", str(uid), ""])
    # `*`: no password can match; empty aging fields, so PAM never demands a password change.
    shadow = _rows(etc_l / "shadow") + [[ADMIN, "*", "", "", "", "", "", "", ""]]
    gshadow = _rows(etc_l / "gshadow") + [[ADMIN, "!", "", ""]]
    _write(etc_u / "passwd", "".join(":".join(r) + "\n" for r in passwd))
    _write(etc_u / "group", "".join(":".join(r) + "\n" for r in group))
    _write(etc_u / "shadow", "".join(":".join(r) + "\n" for r in shadow), mode=0o640, gid=shadow_gid)
    _write(etc_u / "gshadow", "".join(":".join(r) + "\n" for r in gshadow), mode=0o640, gid=shadow_gid)
    _write(etc_u / "sudoers.d/ecom-fleet-admin", f"{ADMIN} ALL=(ALL:ALL) NOPASSWD: ALL\n", mode=0o440)
    home_u = upper / home.lstrip("/")
    home_u.mkdir(parents=True, exist_ok=True)
    for skel in sorted((lower / "etc/skel").glob(".*")):
        if skel.is_file():
            _write(home_u / skel.name, skel.read_text(), uid=uid, gid=uid)
    _write(home_u / ".ssh/authorized_keys", "".join(k + "\n" for k in host.authorized_keys), mode=0o600,
           uid=uid, gid=uid)
    for directory, mode in ((home_u, 0o755), (home_u / ".ssh", 0o700)):
        os.chown(directory, uid, uid)
        os.chmod(directory, mode)
    return uid


def write_cloud_init_seed(host: HostSpec, upper: Path, lower: Path) -> None:
    """What the hypervisor and the image give an instance: a NoCloud seed and the image's cloud-init config.

    Nothing cloud-init writes itself (host keys, users, sudoers, packages, the IMDS rule) is written here.
    """
    # The machine's own cloud-init state (if it is a cloud instance) is not this instance's.
    _opaque_dir(upper / "var/lib/cloud")
    for log in ("cloud-init.log", "cloud-init-output.log"):
        if (lower / "var/log" / log).exists():
            _whiteout(upper / "var/log" / log)
    seed = upper / SEED_DIR
    meta = (f"instance-id: {host.instance_id}\nlocal-hostname: {host.name}\n"
            "public-keys:\n" + "".join(f"  - {json.dumps(k)}\n" for k in host.authorized_keys))
    _write(seed / "meta-data", meta, mode=0o600)
    _write(seed / "user-data", host.user_data, mode=0o600)  # holds the host's private key
    os.chmod(seed, 0o700)
    _write(upper / "etc/cloud/cloud.cfg.d/90_ecom_fleet.cfg", CLOUD_CFG)
    # The image's sshd config (keys only, no root); the key it names is the one the user data installs.
    _write(upper / "etc/ssh/sshd_config.d/ecom-fleet.conf", SSHD_DROPIN)
    # `make setup-system` disables cloud-init on the machine itself; an instance's image has it enabled.
    if (lower / "etc/cloud/cloud-init.disabled").exists():
        _whiteout(upper / "etc/cloud/cloud-init.disabled")
    # The image installs packages only from itself (this machine's installed ones): no apt sources, so the
    # user data's `packages` (apt-get update, install) work without a network and change nothing.
    for source in [lower / "etc/apt/sources.list", *sorted((lower / "etc/apt/sources.list.d").glob("*"))]:
        if source.exists():
            _whiteout(upper / source.relative_to(lower))


def write_unit_policy(upper: Path, lower: Path, extra: dict[str, dict[str, str]] | None = None) -> None:
    """Only sshd and systemd's own units start at boot (see KEEP_ENABLED and MASKED_UNITS), plus `extra`."""
    system_u, system_l = upper / SYSTEMD_DIR, lower / SYSTEMD_DIR
    enabled = {**KEEP_ENABLED, **(extra or {})}
    wanted = sorted(p.name for p in system_l.glob("*.wants")) + sorted(p.name for p in system_l.glob("*.requires"))
    for name in sorted(set(wanted) | set(enabled)):
        _opaque_dir(system_u / name)  # the machine's enablement symlinks are hidden, not deleted
        for unit, target in enabled.get(name, {}).items():
            _symlink(system_u / name / unit, target)
    for unit in MASKED_UNITS:
        _symlink(system_u / unit, "/dev/null")
    _symlink(system_u / "default.target", "/lib/systemd/system/multi-user.target")
    # The journal lives in the host's upper layer; keep it small.
    _write(upper / "etc/systemd/journald.conf.d/ecom-fleet.conf", "[Journal]\nSystemMaxUse=32M\n")


def prepare_root(spec: FleetSpec, host: HostSpec, lower: Path = Path("/")) -> Path:
    """Create the host's state dirs and upper layer; returns the host dir. Re-running converges."""
    directory = host_dir(spec, host)
    for sub in ("upper", "work", "root"):
        (directory / sub).mkdir(parents=True, exist_ok=True, mode=0o755)
    (directory / "console.log").touch(mode=0o600)
    upper = directory / "upper"
    write_identity(spec, host, upper)
    if host.cloud_init:
        write_cloud_init_seed(host, upper, lower)
    else:
        write_ssh(host, upper, lower)
        write_admin(host, upper, lower)
    write_unit_policy(upper, lower, CLOUD_INIT_ENABLED if host.cloud_init else {})
    return directory


# ---- boot, readiness, inspection -------------------------------------------------------------------------

def boot(spec: FleetSpec, host: HostSpec) -> subprocess.Popen:
    directory = host_dir(spec, host)
    cgroup = host_cgroup(spec.name, host.name)
    argv = [str(BOOT_SCRIPT), "outer", str(cgroup), spec.netns(host), str(directory), host.name]
    return spawn(argv, cgroup, directory / "boot.log")


def ssh_banner(address: str, timeout: float = 1.0) -> str | None:
    """The SSH identification line sshd sends first, or None when nothing answers."""
    try:
        with socket.create_connection((address, 22), timeout=timeout) as conn:
            conn.settimeout(timeout)
            data = conn.recv(256)
    except OSError:
        return None
    return data.decode(errors="replace").strip() if data.startswith(b"SSH-") else None


def pid1(name: str, host: str) -> int | None:
    """The host's systemd (PID 1 inside), as a pid of this machine."""
    for pid in cgroup_pids(host_cgroup(name, host)):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            continue
        nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
        if len(nspid) > 1 and nspid[-1] == "1":
            return pid
    return None


def memory_kib(cgroup: Path) -> dict[str, int]:
    """PSS and RSS (KiB) summed over every process of a host's tree."""
    total = {"pss": 0, "rss": 0, "processes": 0}
    for pid in cgroup_pids(cgroup):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total["processes"] += 1
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            if key in ("Pss", "Rss"):
                total[key.lower()] += int(rest.split()[0])
    return total


def remove_state(name: str) -> bool:
    """Delete the fleet's state dir, refusing if anything is still mounted below it."""
    directory = state_dir(name)
    if not directory.exists():
        return False
    prefix = str(directory) + "/"
    mounted = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
               if (line.split()[4] + "/").startswith(prefix)]
    if mounted:
        raise FleetError(f"refusing to delete {directory}: {mounted[0]} is still mounted")
    subprocess.run(["rm", "-rf", "--one-file-system", "--", str(directory)], check=True)
    return True
