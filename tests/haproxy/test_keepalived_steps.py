"""keepalived's install steps run for real (in a private network namespace holding the node's
address), and the notify_master script run against a moto server on loopback."""
from __future__ import annotations

import dataclasses
import stat
import subprocess
import time
from pathlib import Path

import pytest

from renderers.haproxy.keepalived import (
    fill_keepalived_conf,
    render_keepalived_conf,
    render_keepalived_install,
    render_notify_install,
    render_notify_master,
)
from renderers.haproxy.layout import KeepalivedLayout, ServiceControl
from tests.haproxy.helpers import (
    SYSTEM_PYTHON,
    MotoWorld,
    aws_env,
    eip_holder,
    free_port,
    make_moto_world,
    need,
    need_system_boto3,
    node_spec,
    run_in_netns,
    run_script,
)

pytestmark = [pytest.mark.tools, pytest.mark.root]

IP_A, IP_B = "10.213.77.11", "10.213.77.12"
# Ids for tests that never reach an EC2 API.
WORLD_STUB = MotoWorld("http://10.213.77.1:5000", "i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb",
                       "eipalloc-0cccccccccccccccc", "203.0.113.10")


@pytest.fixture
def keepalived_dir(short_dir):
    """A keepalived layout in a temp dir; `is_active` answers from a flag file the test sets,
    reload/start leave marker files, so the test sees which one the script chose."""
    need("keepalived", "unshare", "ip")
    layout = KeepalivedLayout(
        config_path=str(short_dir / "keepalived.conf"),
        notify_path=str(short_dir / "notify-master-eip.py"),
        haproxy_stopped_file=str(short_dir / "haproxy-stopped"), haproxy_dropin=None,
        service=ServiceControl(is_active=("test", "-e", str(short_dir / "active")),
                               reload=("touch", str(short_dir / "reloaded")),
                               start=("touch", str(short_dir / "started")),
                               enable=("touch", str(short_dir / "enabled"))))
    return short_dir, layout


def install(node, layout, password: str | None = None, address: str = IP_A, interface="eth0"):
    return run_in_netns(["bash", "-c", render_keepalived_install(node, layout)],
                        interface=interface, address=address,
                        stdin=None if password is None else password + "\n")


# --------------------------------------------------------------------------- notify install

def test_notify_install_writes_a_root_owned_0755_script_once(keepalived_dir):
    need_system_boto3()
    directory, layout = keepalived_dir
    node = node_spec("haproxy-a", WORLD_STUB, master=True, private_ip=IP_A, peer_ip=IP_B)
    target = Path(layout.notify_path)

    result = run_script(render_notify_install(node, layout))
    assert result.returncode == 0, result.stderr
    assert target.read_text() == render_notify_master(node)
    info = target.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o755)

    target.chmod(0o777)  # someone loosened it: script security would refuse to run it
    result = run_script(render_notify_install(node, layout))
    assert result.stdout.strip() == "keepalived-notify-master: unchanged"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert sorted(p.name for p in directory.iterdir()) == ["notify-master-eip.py"]


# --------------------------------------------------------------------------- keepalived.conf

def test_install_fills_interface_and_password_validates_and_starts(keepalived_dir):
    directory, layout = keepalived_dir
    node = node_spec("haproxy-a", WORLD_STUB, master=True, private_ip=IP_A, peer_ip=IP_B,
                     vrrp_auth=True)
    Path(layout.notify_path).write_text(render_notify_master(node))
    Path(layout.notify_path).chmod(0o755)
    script = render_keepalived_install(node, layout)
    assert "pa55word" not in script

    result = install(node, layout, "pa55word")
    assert result.returncode == 0, result.stderr
    assert "started keepalived" in result.stdout
    assert "pa55word" not in result.stdout + result.stderr
    live = Path(layout.config_path)
    assert live.read_text() == fill_keepalived_conf(render_keepalived_conf(node, layout),
                                                    "eth0", "pa55word")
    assert stat.S_IMODE(live.stat().st_mode) == 0o600
    assert (directory / "started").exists() and not (directory / "reloaded").exists()

    # Same inputs again: nothing to do but make sure it starts at boot (someone disabled it).
    (directory / "active").touch()
    (directory / "enabled").unlink()
    result = install(node, layout, "pa55word")
    assert result.stdout.strip() == "keepalived-config: unchanged"
    assert not (directory / "reloaded").exists()
    assert (directory / "enabled").exists()

    # A changed file while keepalived runs: reload, not start.
    result = install(dataclasses.replace(node, check_fall=3), layout, "pa55word")
    assert result.returncode == 0, result.stderr
    assert "reloaded keepalived" in result.stdout
    assert (directory / "reloaded").exists()
    assert "fall 3" in live.read_text()


def test_install_gives_haproxy_a_unit_drop_in_that_writes_the_track_file(keepalived_dir):
    """The drop-in is written once (daemon-reload once); its hooks really write what keepalived's
    track_file reads: 1 after haproxy's unit stops, 0 after it starts."""
    directory, layout = keepalived_dir
    dropin = directory / "haproxy.service.d" / "ecom-keepalived.conf"
    layout = dataclasses.replace(layout, haproxy_dropin=str(dropin),
                                 daemon_reload=("touch", str(directory / "daemon-reloaded")))
    node = node_spec("haproxy-a", WORLD_STUB, master=True, private_ip=IP_A, peer_ip=IP_B)
    assert f'file "{layout.haproxy_stopped_file}"' in render_keepalived_conf(node, layout)
    result = install(node, layout)
    assert result.returncode == 0, result.stderr
    assert (directory / "daemon-reloaded").exists()
    assert stat.S_IMODE(dropin.stat().st_mode) == 0o644
    hooks = dict(line.split("=", 1) for line in dropin.read_text().splitlines() if line.startswith("Exec"))
    for key, value in (("ExecStopPost", "1"), ("ExecStartPost", "0")):
        command = hooks[key].removeprefix("-+")   # systemd's prefixes: ignore failure, full privileges
        subprocess.run(["/bin/sh", "-c", command.split(" -c ", 1)[1].strip("'")], check=True)
        assert Path(layout.haproxy_stopped_file).read_text() == f"{value}\n"

    (directory / "daemon-reloaded").unlink()
    result = install(node, layout)
    assert result.returncode == 0, result.stderr
    assert not (directory / "daemon-reloaded").exists()


@pytest.mark.parametrize("password, message", [
    ("", "vrrp_password: nothing on stdin"),
    ("much-too-long", "vrrp_password: longer than 8 characters"),
    ("pa ss", "vrrp_password: use only letters, digits"),
])
def test_bad_vrrp_password_is_refused_and_nothing_written(keepalived_dir, password, message):
    _, layout = keepalived_dir
    node = node_spec("haproxy-a", WORLD_STUB, master=True, private_ip=IP_A, peer_ip=IP_B,
                     vrrp_auth=True)
    result = install(node, layout, password)
    assert result.returncode == 1
    assert message in result.stderr
    assert not Path(layout.config_path).exists()


def test_node_without_its_private_ip_is_refused(keepalived_dir):
    _, layout = keepalived_dir
    node = node_spec("haproxy-a", WORLD_STUB, master=True, private_ip=IP_A, peer_ip=IP_B)
    result = install(node, layout, address="10.213.77.99")
    assert result.returncode == 1
    assert ("haproxy_nodes[haproxy-a].private_ip: 10.213.77.11 is not an address of this node"
            in result.stderr)
    assert not Path(layout.config_path).exists()


def test_what_keepalived_t_reports_is_refused_and_the_live_file_stays(keepalived_dir):
    _, layout = keepalived_dir
    node = node_spec("haproxy-a", WORLD_STUB, master=True, private_ip=IP_A, peer_ip=IP_B)
    Path(layout.notify_path).write_text(render_notify_master(node))
    Path(layout.notify_path).chmod(0o755)
    assert install(node, layout).returncode == 0
    before = Path(layout.config_path).read_text()

    broken = dataclasses.replace(node, vrrp_interface="nosuch0", check_fall=5)
    result = install(broken, layout)
    assert result.returncode == 1
    assert "keepalived -t rejected the new configuration (exit 5)" in result.stderr
    assert "nosuch0" in result.stderr  # keepalived's own words
    assert Path(layout.config_path).read_text() == before
    assert not Path(f"{layout.config_path}.new").exists()


# --------------------------------------------------------------------------- notify_master

def notify_script(tmp: Path, node) -> Path:
    path = tmp / "notify-master-eip.py"
    path.write_text(render_notify_master(node))
    path.chmod(0o755)
    return path


def test_notify_master_moves_the_eip_to_its_instance(moto_server, short_dir):
    need_system_boto3()
    world = make_moto_world(moto_server)
    assert eip_holder(moto_server, world.allocation_id) == world.instance_a
    node = node_spec("haproxy-b", world, master=False, private_ip=IP_B, peer_ip=IP_A)
    script = notify_script(short_dir, node)
    for _ in range(2):  # the second run finds it there already and still succeeds
        result = subprocess.run([SYSTEM_PYTHON, str(script)], env=aws_env(short_dir),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert f"{world.allocation_id} associated with {world.instance_b}" in result.stderr
        assert eip_holder(moto_server, world.allocation_id) == world.instance_b


def test_notify_master_reads_a_standard_credentials_file(moto_server, short_dir):
    need_system_boto3()
    world = make_moto_world(moto_server)
    node = node_spec("haproxy-b", world, master=False, private_ip=IP_B, peer_ip=IP_A,
                     notify_attempts=2, notify_retry_delay_s=0)
    script = notify_script(short_dir, node)
    env = aws_env(short_dir)
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]

    # No credentials anywhere: it fails, and says why.
    result = subprocess.run([SYSTEM_PYTHON, str(script)], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "Unable to locate credentials" in result.stderr
    assert eip_holder(moto_server, world.allocation_id) == world.instance_a

    credentials = short_dir / "credentials"
    credentials.write_text("[default]\naws_access_key_id = file\naws_secret_access_key = file\n")
    credentials.chmod(0o600)
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(credentials)
    result = subprocess.run([SYSTEM_PYTHON, str(script)], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert eip_holder(moto_server, world.allocation_id) == world.instance_b


def test_notify_master_gives_up_after_its_bounded_attempts(short_dir):
    need_system_boto3()
    closed = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    world = dataclasses.replace(WORLD_STUB, endpoint=closed)
    node = node_spec("haproxy-b", world, master=False, private_ip=IP_B, peer_ip=IP_A,
                     notify_attempts=2, notify_retry_delay_s=0.2)
    started = time.monotonic()
    result = subprocess.run([SYSTEM_PYTHON, str(notify_script(short_dir, node))],
                            env=aws_env(short_dir), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "attempt 2/2" in result.stderr
    assert f"gave up: {world.allocation_id} is NOT associated with {world.instance_b}" in (
        result.stderr)
    assert time.monotonic() - started < 60
