"""Deploy events (issue 13 item 5): `ecom-deploy deploy-event` after an up sends one event per app whose
sha changed, to a local HTTP receiver standing in for Datadog's events API and for a webhook, which
checks what arrives; a failed delivery only warns; the API key is never printed."""
from __future__ import annotations

import io
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.release.helpers import SHA

API_KEY = "dd-0123456789abcdef-not-a-real-key"


class Receiver:
    """An HTTP server on loopback that records every POST (path, headers by lowercase name, JSON body)."""

    def __init__(self, status: int = 202):
        self.requests: list[dict] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": json.loads(body)})
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b'{"status": "ok"}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


def configure(project: Path, env: str, datadog: dict | None, events: dict | None) -> None:
    path = project / f"Pulumi.{env}.yaml"
    doc = yaml.safe_load(path.read_text())
    if datadog is not None:
        doc["config"]["ecom-infra:datadog"] = datadog
    if events is not None:
        doc["config"]["ecom-infra:deployEvents"] = events
    path.write_text(yaml.safe_dump(doc))


def outputs_file(tmp_path: Path, shas: dict[str, str | None], servers: int = 2) -> str:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"apps": {app: {"sha": sha, "servers": [{"name": f"{app}-{i + 1}"}
                                                                        for i in range(servers)]}
                                         for app, sha in shas.items()}}))
    return str(path)


def event(cli, monkeypatch, result: str, outputs: str, started: int, key: str | None = API_KEY):
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{key}\n" if key else ""))
    return cli("deploy-event", "--env", "staging", "--result", result, "--outputs", outputs,
               "--started", str(started), "--actor", "ci-runner", *(["--api-key-stdin"] if key else []))


def test_success_failure_and_rollback_each_send_one_checked_event(cli, project, bucket, receiver, tmp_path,
                                                                  monkeypatch):
    configure(project, "staging", {"enabled": True, "apiUrl": receiver.url, "apiKey": {"secure": "v1:AAAA"}},
              {"webhookUrl": f"{receiver.url}/hooks/deploys"})
    cli("stage", "--env", "staging", "--app", "ecom-platform", "--sha", SHA[1], "--no-verify-sha", "--actor", "alice")
    first = event(cli, monkeypatch, "success", outputs_file(tmp_path, {"ecom-platform": SHA[1], "ecom-docs": None}),
                  int(time.time()) - 42)
    assert first.code == 0, first.err
    assert API_KEY not in first.out + first.err
    datadog, webhook = receiver.requests
    assert datadog["path"] == "/api/v1/events" and datadog["headers"]["dd-api-key"] == API_KEY
    assert datadog["headers"]["content-type"] == "application/json"
    body = datadog["body"]
    assert body["title"] == "Deploy of ecom-platform to staging succeeded" and body["alert_type"] == "success"
    assert {"app:ecom-platform", "env:staging", "result:success", "kind:deploy", "actor:alice"} <= set(body["tags"])
    assert f"new sha: {SHA[1]}" in body["text"] and "old sha: none" in body["text"] and "hosts: 2" in body["text"]
    assert body["aggregation_key"] == "deploy-staging-ecom-platform"
    assert webhook["path"] == "/hooks/deploys" and "dd-api-key" not in webhook["headers"]
    hook = webhook["body"]
    assert {k: hook[k] for k in ("app", "environment", "hosts", "old_sha", "new_sha", "actor", "result", "kind")} == {
        "app": "ecom-platform", "environment": "staging", "hosts": 2, "old_sha": None, "new_sha": SHA[1],
        "actor": "alice", "result": "success", "kind": "deploy"}
    assert 42 <= hook["duration_s"] <= 60 and first.out.startswith("staging/ecom-platform: deploy (none) -> ")
    cli("mark-live", "--env", "staging", "--outputs", outputs_file(tmp_path, {"ecom-platform": SHA[1]}),
        "--actor", "ci")

    # The same shas again: nothing was published, nothing is sent.
    again = event(cli, monkeypatch, "success", outputs_file(tmp_path, {"ecom-platform": SHA[1]}), int(time.time()))
    assert len(receiver.requests) == 2 and "no app changed sha" in again.out

    # A failed up: the sha it was asked to deploy, against the live one.
    cli("stage", "--env", "staging", "--app", "ecom-platform", "--sha", SHA[2], "--no-verify-sha", "--actor", "bob")
    failed = event(cli, monkeypatch, "failure", outputs_file(tmp_path, {"ecom-platform": SHA[1]}), int(time.time()))
    assert failed.code == 0
    body = receiver.requests[2]["body"]
    assert body["alert_type"] == "error" and body["title"] == "Deploy of ecom-platform to staging failed"
    assert receiver.requests[3]["body"]["old_sha"] == SHA[1] and receiver.requests[3]["body"]["new_sha"] == SHA[2]
    assert receiver.requests[3]["body"]["actor"] == "bob" and receiver.requests[3]["body"]["result"] == "failure"

    # It is fixed forward (SHA[3] live), then rolled back by hand to SHA[1]: a rollback event.
    cli("stage", "--env", "staging", "--app", "ecom-platform", "--sha", SHA[3], "--no-verify-sha", "--actor", "bob")
    cli("mark-live", "--env", "staging", "--outputs", outputs_file(tmp_path, {"ecom-platform": SHA[3]}),
        "--actor", "ci")
    cli("rollback", "--env", "staging", "--app", "ecom-platform", "--actor", "oncall")
    back = event(cli, monkeypatch, "success", outputs_file(tmp_path, {"ecom-platform": SHA[1]}), int(time.time()))
    assert back.code == 0
    body, hook = receiver.requests[4]["body"], receiver.requests[5]["body"]
    assert body["title"] == "Rollback of ecom-platform to staging succeeded" and "kind:rollback" in body["tags"]
    assert (hook["kind"], hook["actor"], hook["old_sha"], hook["new_sha"]) == ("rollback", "oncall", SHA[3], SHA[1])
    assert all(API_KEY not in json.dumps(r["body"]) for r in receiver.requests)


def test_a_failed_delivery_warns_and_never_fails_the_deploy(cli, project, bucket, tmp_path, monkeypatch):
    refusing = Receiver(status=500)
    closed = Receiver()
    closed.close()          # nothing listens there any more
    try:
        configure(project, "staging", {"apiUrl": refusing.url, "apiKey": {"secure": "v1:AAAA"}},
                  {"webhookUrl": f"{closed.url}/hook", "timeout": 2})
        cli("stage", "--env", "staging", "--app", "ecom-docs", "--sha", SHA[4], "--no-verify-sha")
        result = event(cli, monkeypatch, "success", outputs_file(tmp_path, {"ecom-docs": SHA[4]}, servers=1),
                       int(time.time()))
        assert result.code == 0
        assert "not delivered to datadog: HTTP 500" in result.err and "not delivered to webhook" in result.err
        assert "event sent to nowhere" in result.out and API_KEY not in result.out + result.err
        assert len(refusing.requests) == 1
    finally:
        refusing.close()


def test_without_an_api_key_in_the_stack_datadog_gets_nothing(cli, project, bucket, receiver, tmp_path, monkeypatch):
    configure(project, "staging", {"apiUrl": receiver.url}, {"webhookUrl": f"{receiver.url}/hook"})
    cli("stage", "--env", "staging", "--app", "ecom-docs", "--sha", SHA[5], "--no-verify-sha")
    result = event(cli, monkeypatch, "success", outputs_file(tmp_path, {"ecom-docs": SHA[5]}), int(time.time()))
    assert result.code == 0 and [r["path"] for r in receiver.requests] == ["/hook"]


def test_a_key_set_but_not_given_warns(cli, project, bucket, receiver, tmp_path, monkeypatch):
    configure(project, "staging", {"apiUrl": receiver.url, "apiKey": {"secure": "v1:AAAA"}}, None)
    cli("stage", "--env", "staging", "--app", "ecom-docs", "--sha", SHA[6], "--no-verify-sha")
    result = event(cli, monkeypatch, "success", outputs_file(tmp_path, {"ecom-docs": SHA[6]}), int(time.time()),
                   key=None)
    assert result.code == 0 and "no key came on stdin" in result.err and receiver.requests == []


@pytest.mark.parametrize("datadog,events,key", [
    ({"apiKey": API_KEY}, None, "ecom-infra:datadog.apiKey"),                  # plain text in the stack file
    ({"apiUrl": "ftp://example.com"}, None, "ecom-infra:datadog.apiUrl"),
    (None, {"webhookUrl": "https://user:pw@hooks.example.com/x"}, "ecom-infra:deployEvents.webhookUrl"),
    (None, {"timeout": 0}, "ecom-infra:deployEvents.timeout"),
    (None, {"url": "https://hooks.example.com"}, "ecom-infra:deployEvents.url"),
])
def test_bad_event_settings_are_one_line_errors(cli, project, bucket, tmp_path, monkeypatch, datadog, events, key):
    configure(project, "staging", datadog, events)
    result = event(cli, monkeypatch, "success", outputs_file(tmp_path, {}), int(time.time()))
    assert result.code == 2 and f"error: {key}:" in result.err and len(result.err.strip().splitlines()) == 1
    assert API_KEY not in result.err
