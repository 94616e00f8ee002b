"""Deploy events: one per publish of an app (success or failure; a rollback says so), sent to
Datadog's events API and to an optional generic webhook.

Sent by `ecom-deploy deploy-event`, which the deploy workflows run after every `pulumi up`,
successful or not (README, "Deploy events"), not by the Pulumi program or a host step: after a
failed step the engine starts no other step, so only something outside the engine sees every
outcome, and the API key then stays with CI instead of on the app servers. A delivery that fails
warns on stderr and never changes the exit status; the key travels in a header only, never in a
URL, an argument or a message.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass

RESULTS = ("success", "failure")
KINDS = ("deploy", "rollback")
SOURCE = "ecom-infra"


@dataclass(frozen=True)
class DeployEvent:
    app: str
    environment: str
    hosts: int              # app servers the publish covered
    old_sha: str | None     # what was live before (None: first release)
    new_sha: str
    actor: str              # who set the sha (the sha file's record), else who ran the deploy
    duration_s: int         # the whole `pulumi up`, start to outcome
    result: str             # success | failure
    kind: str               # deploy | rollback (the sha was set by `ecom-deploy rollback`)
    time: int               # POSIX seconds when the outcome was known

    def __post_init__(self) -> None:
        if self.result not in RESULTS or self.kind not in KINDS:
            raise ValueError(f"result must be one of {RESULTS} and kind one of {KINDS}")

    @property
    def title(self) -> str:
        what = "Rollback" if self.kind == "rollback" else "Deploy"
        outcome = "succeeded" if self.result == "success" else "failed"
        return f"{what} of {self.app} to {self.environment} {outcome}"[:100]

    def summary(self) -> str:
        old = self.old_sha[:12] if self.old_sha else "(none)"
        return (f"{self.environment}/{self.app}: {self.kind} {old} -> {self.new_sha[:12]} on {self.hosts} "
                f"server(s) by {self.actor} in {self.duration_s}s: {self.result}")


def datadog_payload(event: DeployEvent) -> dict:
    """The body of Datadog's `POST /api/v1/events` (title, text, alert_type, tags, aggregation_key)."""
    old = event.old_sha or "none"
    text = (f"{event.summary()}\n\nold sha: {old}\nnew sha: {event.new_sha}\nhosts: {event.hosts}\n"
            f"actor: {event.actor}\nduration: {event.duration_s}s")
    return {
        "title": event.title,
        "text": text,
        "alert_type": "success" if event.result == "success" else "error",
        "priority": "normal",
        "date_happened": event.time,
        "source_type_name": SOURCE,
        "aggregation_key": f"deploy-{event.environment}-{event.app}"[:100],
        "tags": [f"app:{event.app}", f"env:{event.environment}", f"result:{event.result}", f"kind:{event.kind}",
                 f"sha:{event.new_sha[:12]}", f"actor:{event.actor}", f"source:{SOURCE}"],
    }


def webhook_payload(event: DeployEvent) -> dict:
    """The generic webhook's JSON: every field of the event, plus its title."""
    return {"event": "deploy", "title": event.title, **asdict(event)}


def _post(url: str, body: dict, headers: dict[str, str], timeout: float) -> int:
    request = urllib.request.Request(url, data=json.dumps(body, sort_keys=True).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": SOURCE, **headers})
    # No proxy from the environment: the receiver is named by the stack settings alone.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        return response.status


def send(event: DeployEvent, *, datadog_url: str | None, api_key: str | None, webhook_url: str | None,
         timeout: float, warn: Callable[[str], None]) -> dict[str, bool]:
    """Deliver `event` to Datadog (when an api key is given) and to the webhook (when a URL is given).

    Returns {target: delivered}. Never raises for a delivery problem: it warns, naming the target and
    the reason (HTTP status or error class), never the key."""
    delivered: dict[str, bool] = {}
    targets = []
    if api_key and datadog_url:
        targets.append(("datadog", f"{datadog_url.rstrip('/')}/api/v1/events", datadog_payload(event),
                        {"DD-API-KEY": api_key}))
    if webhook_url:
        targets.append(("webhook", webhook_url, webhook_payload(event), {}))
    for name, url, body, headers in targets:
        try:
            status = _post(url, body, headers, timeout)
            delivered[name] = 200 <= status < 300
            if not delivered[name]:
                warn(f"deploy event for {event.app} not delivered to {name}: HTTP {status}")
        except urllib.error.HTTPError as exc:
            delivered[name] = False
            warn(f"deploy event for {event.app} not delivered to {name}: HTTP {exc.code}")
        except (OSError, ValueError) as exc:    # URLError, timeouts, refused connections
            delivered[name] = False
            reason = getattr(exc, "reason", None) or type(exc).__name__
            warn(f"deploy event for {event.app} not delivered to {name} ({url.split('?')[0]}): {reason}")
    return delivered
