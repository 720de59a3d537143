"""Every language's example client (clients/go, java, node, python) against a live sidecar.

For each language: start a real `wahook serve` (TLS, SQLite, free ports), POST seven signed
webhooks (text, button reply, list reply, image, location, reaction, read status) plus one
template status update that the example's filter must drop, run the example as a real
process, and check that it printed exactly those events — ids, types and key fields, in the
one-line JSON format the four examples share — and acked them (pending_count 0). Then
restart the sidecar on the same data directory and ports while the example runs, POST three
more, and check it reconnects and gets them with nothing lost. Then a new group replays
everything from the start and the example stops cleanly on SIGTERM (exit 0); the first
group, rejoined, gets nothing more and --idle-exit ends it; --count beyond what there is
ends with 4, a target where nothing listens with 3; last, a subscription the server
refuses (INVALID_ARGUMENT) ends the example with exit code 1 instead of retrying.

Leases and dead letters (all four): an example whose handler fails on image messages
(--fail-message-types) nacks one by its ack id on each of the group's 3 attempts
(--max-delivery-attempts; the examples ask for it again after 1 s, then 2 s), after which it
waits in the group's dead letters with the handler's error, while the text message beside it
is acked by its ack id: the server confirms exactly that ack (acks by sequence are never
confirmed) and nothing stays pending. Listed and redelivered with `wahook groups
dead-letters` (as the READMEs say), the image comes again at attempt 1 and is acked.

Message sizes (all four): a signed 3 MB text message becomes a ~6 MB event, over gRPC's
default 4 MiB; each example's 9 MiB receive limit takes it, and nothing is dead-lettered.

Each client is built once per run by its make target (a no-op when already built).
"""

from __future__ import annotations

import json
import queue
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from wahook.core.signature import sign
from wahook.v1 import event_pb2, service_pb2, service_pb2_grpc
from wahook_testkit import APP_SECRET, Certs, WahookFactory, WahookProcess, free_port

# Generous: when `make clients-test` has not built the examples first, the first test of
# each language builds it (a cold Go or Maven build is minutes on two cores).
pytestmark = [pytest.mark.clients, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
LANGUAGES = ["go", "java", "node", "python"]
WABA_ID = "1555010000900"
PHONE_NUMBER_ID = "1555010000100"
CUSTOMER = "15550101234"
OUTBOUND = "wamid.HBgL-OUTBOUND-0001"
HELLO = "Olá! Table for 2 ✓"  # non-ASCII: Meta sends it escaped, every client prints UTF-8


def command(lang: str, target: str, group: str, *extra: str) -> list[str]:
    """How each example is run; every one takes the same flags."""
    flags = ["--target", target, "--group", group, "--event-types", "message,status", *extra]
    match lang:
        case "go":
            return [str(ROOT / "clients/go/.bin/wahook-subscribe"), *flags]
        case "java":
            return ["java", "-jar", str(ROOT / "clients/java/target/wahook-subscribe.jar"), *flags]
        case "node":
            return ["node", str(ROOT / "clients/node/dist/src/subscribe.js"), *flags]
        case _:
            return [sys.executable, str(ROOT / "clients/python/subscribe.py"), *flags]


@pytest.fixture(scope="session")
def built() -> set[str]:
    """Languages whose example has been built in this session."""
    return set()


def build(lang: str, built: set[str]) -> None:
    # Python runs from the venv this pytest runs in: nothing to build (and rebuilding
    # wahook.v1 under a running pytest would pull it from under the other tests).
    if lang in built or lang == "python":
        return
    proc = subprocess.run(
        ["make", "--no-print-directory", f"clients-build-{lang}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"make clients-build-{lang} failed:\n{proc.stdout}\n{proc.stderr}")
    built.add(lang)


# --- the webhooks: Meta's shapes, made-up ids -------------------------------------------


def envelope(field: str, value: dict[str, Any]) -> bytes:
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"field": field, "value": value}]}],
    }
    # Meta escapes non-ASCII as \uXXXX; the signature is over exactly these bytes.
    return json.dumps(body).encode()


def messages_value(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100001", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": "Ana Example"}, "wa_id": CUSTOMER}],
        "messages": [{"from": CUSTOMER, "timestamp": "1767000000", **message}],
    }


def message(wamid: str, kind: str, content: dict[str, Any], expect: dict[str, Any]) -> Fixture:
    body = envelope("messages", messages_value({"id": wamid, "type": kind, kind: content}))
    line = {"type": "message", "message_type": kind, "message_id": wamid, "from": CUSTOMER}
    return Fixture(body, ("message", wamid), line | expect)


class Fixture:
    """One webhook body and the line an example must print for its event."""

    def __init__(self, body: bytes, key: tuple[str, str], line: dict[str, Any]) -> None:
        self.body, self.key, self.line = body, key, line


def first_batch() -> list[Fixture]:
    status_value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100001", "phone_number_id": PHONE_NUMBER_ID},
        "statuses": [
            {
                "id": OUTBOUND,
                "status": "read",
                "timestamp": "1767000050",
                "recipient_id": CUSTOMER,
            }
        ],
    }
    return [
        message(
            "wamid.T-0001", "text", {"body": "Olá! Table for 2 ✓"}, {"text": "Olá! Table for 2 ✓"}
        ),
        message(
            "wamid.T-0002",
            "interactive",
            {"type": "button_reply", "button_reply": {"id": "confirm-yes", "title": "Yes"}},
            {"reply_id": "confirm-yes", "reply_title": "Yes"},
        ),
        message(
            "wamid.T-0003",
            "interactive",
            {
                "type": "list_reply",
                "list_reply": {"id": "slot-tue", "title": "Tuesday", "description": "9-12"},
            },
            {"reply_id": "slot-tue", "reply_title": "Tuesday"},
        ),
        message(
            "wamid.T-0004",
            "image",
            {
                "id": "1555010555001",
                "mime_type": "image/jpeg",
                "sha256": "c2hh",
                "caption": "receipt",
            },
            {"media_id": "1555010555001", "mime_type": "image/jpeg", "caption": "receipt"},
        ),
        message(
            "wamid.T-0005",
            "location",
            {"latitude": 38.7223, "longitude": -9.1393, "name": "Lisbon office"},
            {"latitude": 38.7223, "longitude": -9.1393, "location_name": "Lisbon office"},
        ),
        message(
            "wamid.T-0006",
            "reaction",
            {"message_id": OUTBOUND, "emoji": "👍"},
            {"emoji": "👍", "reacted_to": OUTBOUND},
        ),
        Fixture(
            envelope("messages", status_value),
            ("status", OUTBOUND),
            {"type": "status", "message_id": OUTBOUND, "recipient_id": CUSTOMER, "status": "read"},
        ),
    ]


def second_batch() -> list[Fixture]:
    return [
        message(
            "wamid.T-0101", "text", {"body": "after the restart"}, {"text": "after the restart"}
        ),
        message(
            "wamid.T-0102",
            "document",
            {"id": "1555010555002", "mime_type": "application/pdf", "filename": "menu.pdf"},
            {"media_id": "1555010555002", "mime_type": "application/pdf"},
        ),
        message(
            "wamid.T-0103",
            "reaction",
            {"message_id": OUTBOUND, "emoji": "🎉"},
            {"emoji": "🎉", "reacted_to": OUTBOUND},
        ),
    ]


def filtered_out() -> bytes:
    """A template status update: the examples subscribe to message,status only."""
    return envelope(
        "message_template_status_update",
        {
            "event": "APPROVED",
            "message_template_id": 1555010777,
            "message_template_name": "welcome",
            "message_template_language": "en_US",
            "reason": "NONE",
        },
    )


# --- talking to the sidecar -------------------------------------------------------------


def post(server: WahookProcess, ctx: ssl.SSLContext, body: bytes) -> None:
    req = urllib.request.Request(
        server.webhook_url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, APP_SECRET)},
    )
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        assert resp.status == 200


def channel(target: str) -> grpc.Channel:
    # Events can be larger than gRPC's default 4 MiB (see the 3 MB test).
    return grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 9 << 20)])


def stored_ids(target: str) -> dict[tuple[str, str], event_pb2.Event]:
    """(type, message id) → the stored event, from ListEvents."""
    with channel(target) as ch:
        resp = service_pb2_grpc.EventServiceStub(ch).ListEvents(
            service_pb2.ListEventsRequest(page_size=1000), timeout=10
        )
    out: dict[tuple[str, str], event_pb2.Event] = {}
    for ev in resp.events:
        kind = ev.WhichOneof("payload") or ""
        wamid = ev.message.id if kind == "message" else ev.status.id if kind == "status" else ""
        out[(kind, wamid)] = ev
    return out


def pending(target: str, group: str) -> int:
    with channel(target) as ch:
        resp = service_pb2_grpc.EventServiceStub(ch).GetConsumerGroup(
            service_pb2.GetConsumerGroupRequest(consumer_group=group), timeout=10
        )
    return int(resp.group.pending_count)


def wait_pending_zero(target: str, group: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (n := pending(target, group)) != 0:
        assert time.monotonic() < deadline, f"group {group} still has {n} pending"
        time.sleep(0.1)


class Example:
    """An example client process whose stdout lines are collected as JSON."""

    def __init__(self, cmd: list[str], log: Path, sidecar_dir: Path) -> None:
        self.log = log
        self.sidecar_dir = sidecar_dir  # its stderr-*.log files go into failure messages
        self._stderr = log.open("w")
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True, encoding="utf-8"
        )
        self.lines: list[dict[str, Any]] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        self._pumper = threading.Thread(target=self._pump, daemon=True)
        self._pumper.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._q.put(raw)
        self._q.put(None)

    def wait_lines(self, n: int, timeout: float = 90.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.lines) < n:
            try:
                raw = self._q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(self.explain(f"{len(self.lines)}/{n} lines")) from None
            if raw is None:
                raise AssertionError(self.explain(f"exited after {len(self.lines)}/{n} lines"))
            self.lines.append(json.loads(raw))
        return self.lines

    def read_rest(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """After the process exited: every line it printed."""
        while (raw := self._q.get(timeout=timeout)) is not None:
            self.lines.append(json.loads(raw))
        self._q.put(None)  # for a later call
        return self.lines

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(self.explain("did not exit")) from None

    def explain(self, what: str) -> str:
        self._stderr.flush()
        sidecar = "".join(
            f"\n--- {p.name} (tail) ---\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.sidecar_dir.glob("stderr-*.log"))
        )
        return (
            f"example {what}; stdout so far {self.lines}; stderr:\n{self.log.read_text()}{sidecar}"
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._pumper.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()


def expected(
    fixtures: list[Fixture], stored: dict[tuple[str, str], event_pb2.Event]
) -> dict[str, dict[str, Any]]:
    """Event id → the exact line (without sequence and attempt) the example must print."""
    out: dict[str, dict[str, Any]] = {}
    for f in fixtures:
        ev = stored[f.key]
        out[ev.id] = {"id": ev.id, **f.line}
    return out


def without_delivery_fields(line: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in line.items() if k not in ("sequence", "attempt")}


# --- the test -----------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_example_receives_acks_and_survives_restart(
    lang: str, built: set[str], wahook_factory: type[WahookFactory], certs: Certs, tmp_path: Path
) -> None:
    build(lang, built)
    ctx = certs.client_context()
    data_dir = tmp_path / "data"
    # Fixed ports: the restarted sidecar must be where the example reconnects to.
    ports = {"http_port": free_port(), "grpc_port": free_port()}
    server = wahook_factory.start(data_dir, **ports)
    target = server.grpc_target
    group = f"{lang}-example"

    batch1 = first_batch()
    for f in batch1:
        post(server, ctx, f.body)
    post(server, ctx, filtered_out())
    stored = stored_ids(target)
    want1 = expected(batch1, stored)

    example = Example(
        command(lang, target, group, "--count", "10"), tmp_path / "example1.log", data_dir
    )
    try:
        got = example.wait_lines(len(batch1))
        assert {line["id"]: without_delivery_fields(line) for line in got} == want1
        assert len(got) == len(want1), "an event was printed twice"
        assert all(line["attempt"] == 1 for line in got)
        assert {line["sequence"] for line in got} == {stored[f.key].sequence for f in batch1}
        wait_pending_zero(target, group)

        # Drop the stream: stop the sidecar (SIGTERM drains) and start it again on the
        # same data directory and ports while the example keeps running.
        assert server.terminate() == 0
        server = wahook_factory.start(data_dir, **ports)
        batch2 = second_batch()
        for f in batch2:
            post(server, ctx, f.body)
        want2 = expected(batch2, stored_ids(target))

        got = example.wait_lines(len(batch1) + len(batch2))
        assert example.wait_exit() == 0  # --count 10 reached
        by_id = {line["id"]: without_delivery_fields(line) for line in got}
        assert by_id == want1 | want2, "an event was lost or changed across the restart"
        assert len(got) == len(by_id), "an acked event came again"
        assert "reconnect" in example.log.read_text().lower()
        wait_pending_zero(target, group)
    finally:
        example.close()

    # A new group starts from the earliest event and sees all ten; SIGTERM stops it cleanly.
    replay = Example(command(lang, target, f"{lang}-replay"), tmp_path / "example2.log", data_dir)
    try:
        got = replay.wait_lines(10)
        assert {line["id"] for line in got} == set(want1) | set(want2)
        wait_pending_zero(target, f"{lang}-replay")
        replay.proc.send_signal(signal.SIGTERM)
        code = replay.wait_exit(timeout=15)
        assert code == 0, replay.explain(f"exit {code}")  # Java too, not 128 + SIGTERM
        assert pending(target, f"{lang}-replay") == 0
    finally:
        replay.close()

    # The first group again: everything is acked, so nothing comes, and --idle-exit ends it.
    idle = Example(
        command(lang, target, group, "--idle-exit", "1.5"), tmp_path / "example4.log", data_dir
    )
    try:
        assert idle.wait_exit(timeout=30) == 0
        assert idle.read_rest() == [], "an acked event was delivered again to its group"
    finally:
        idle.close()

    # Asked for more events than there are: all ten, then --idle-exit, and exit 4.
    short = Example(
        command(lang, target, f"{lang}-short", "--count", "11", "--idle-exit", "1.5"),
        tmp_path / "example5.log",
        data_dir,
    )
    try:
        assert short.wait_exit(timeout=60) == 4, short.explain("exit")
        assert len(short.read_rest()) == 10
        assert "10 of --count 11" in short.log.read_text()
    finally:
        short.close()

    # Nothing listens at the target: no stream ever opened, so exit 3, not 0.
    nowhere = Example(
        command(lang, f"127.0.0.1:{free_port()}", group, "--idle-exit", "2"),
        tmp_path / "example6.log",
        data_dir,
    )
    try:
        assert nowhere.wait_exit(timeout=60) == 3, nowhere.explain("exit")
        assert nowhere.read_rest() == []
        assert "never connected" in nowhere.log.read_text()
    finally:
        nowhere.close()

    # A refusal that retrying cannot fix (a group name with a space): exit 1 at once, no
    # reconnect loop.
    refused = Example(command(lang, target, "not a group"), tmp_path / "example3.log", data_dir)
    try:
        assert refused.wait_exit(timeout=20) == 1
        err = refused.log.read_text().lower()
        assert "invalid" in err, err
        assert "reconnect" not in err, err
    finally:
        refused.close()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_example_sends_the_token_the_sidecar_asks_for(
    lang: str, built: set[str], wahook_factory: type[WahookFactory], certs: Certs, tmp_path: Path
) -> None:
    build(lang, built)
    data_dir = tmp_path / "data"
    server = wahook_factory.start(data_dir, env={"WAHOOK_GRPC_TOKEN": "example-token"})
    batch = first_batch()[:1]
    post(server, certs.client_context(), batch[0].body)
    flags = ("--count", "1", "--token", "example-token")
    example = Example(
        command(lang, server.grpc_target, f"{lang}-token", *flags),
        tmp_path / "example.log",
        data_dir,
    )
    try:
        assert len(example.wait_lines(1)) == 1
        assert example.wait_exit() == 0
    finally:
        example.close()


# --- leases and dead letters ----------------------------------------------------------------

# The examples that use ack ids and take --max-delivery-attempts and --fail-message-types.
LEASE_LANGUAGES = ["go", "java", "node", "python"]
CONFIRMED = re.compile(r"confirmed (\d+) acks, (\d+) nacks, (\d+) lease extensions; (\d+) expired")


def stub_call(target: str, method: str, request: Any) -> Any:
    with channel(target) as ch:
        return getattr(service_pb2_grpc.EventServiceStub(ch), method)(request, timeout=10)


def wait_dead_letters(target: str, group: str, n: int, timeout: float = 60.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    req = service_pb2.ListDeadLettersRequest(consumer_group=group)
    while len(got := stub_call(target, "ListDeadLetters", req).dead_letters) < n:
        assert time.monotonic() < deadline, f"group {group}: {len(got)}/{n} dead letters"
        time.sleep(0.1)
    return list(got)


def groups_cli(target: str, *args: str) -> str:
    """`wahook groups ARGS` against the sidecar; its stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", "wahook.cli", "groups", *args, "--target", target],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"wahook groups {args}: {proc.stderr}"
    return proc.stdout


def confirmed(example: Example) -> dict[str, int]:
    """What the example says the server confirmed (its last stderr line of that form)."""
    found = CONFIRMED.findall(example.log.read_text())
    assert found, example.explain("printed no confirmation counts")
    acked, nacked, extended, expired = map(int, found[-1])
    return {"acked": acked, "nacked": nacked, "extended": extended, "expired": expired}


@pytest.mark.parametrize("lang", LEASE_LANGUAGES)
def test_example_acks_by_ack_id_and_dead_letters_a_failing_event(
    lang: str, built: set[str], wahook_factory: type[WahookFactory], certs: Certs, tmp_path: Path
) -> None:
    build(lang, built)
    ctx = certs.client_context()
    data_dir = tmp_path / "data"
    server = wahook_factory.start(data_dir)
    target = server.grpc_target
    group = f"{lang}-leases"
    text = message("wamid.T-0201", "text", {"body": "fine"}, {"text": "fine"})
    image = message(
        "wamid.T-0202",
        "image",
        {"id": "1555010555003", "mime_type": "image/png", "sha256": "c2hh"},
        {"media_id": "1555010555003", "mime_type": "image/png"},
    )
    for f in (text, image):
        post(server, ctx, f.body)
    stored = stored_ids(target)
    text_id, image_id = stored[text.key].id, stored[image.key].id

    poisoned = Example(
        command(
            lang, target, group, "--max-delivery-attempts", "3", "--fail-message-types", "image"
        ),
        tmp_path / "poisoned.log",
        data_dir,
    )
    try:
        # The text once; the image on each of its 3 attempts, nacked each time.
        got = poisoned.wait_lines(4)
        [dead] = wait_dead_letters(target, group, 1)
        wait_pending_zero(target, group)
        assert [line["attempt"] for line in got if line["id"] == text_id] == [1]
        assert [line["attempt"] for line in got if line["id"] == image_id] == [1, 2, 3]
        assert dead.event.id == image_id
        assert dead.attempts == 3
        assert dead.last_error == "message type image refused (--fail-message-types)"
        info = stub_call(
            target, "GetConsumerGroup", service_pb2.GetConsumerGroupRequest(consumer_group=group)
        ).group
        assert (info.max_delivery_attempts, info.dead_letter_count) == (3, 1)
        poisoned.proc.send_signal(signal.SIGTERM)
        code = poisoned.wait_exit(timeout=15)
        assert code == 0, poisoned.explain(f"exit {code}")
        # Only acks by ack id are confirmed: the text's was.
        counts = confirmed(poisoned)
        assert (counts["acked"], counts["expired"]) == (1, 0), poisoned.explain(str(counts))
        assert counts["nacked"] == 3, poisoned.explain(str(counts))
    finally:
        poisoned.close()

    # What the READMEs tell a user to run: list the dead letters, then send them back.
    [listed] = [json.loads(line) for line in groups_cli(target, "dead-letters", group).splitlines()]
    assert (listed["event"]["id"], listed["attempts"]) == (image_id, 3)
    assert listed["lastError"] == "message type image refused (--fail-message-types)"
    groups_cli(target, "dead-letters", group, "--redeliver-all")
    healed = Example(
        command(lang, target, group, "--count", "1"), tmp_path / "healed.log", data_dir
    )
    try:
        [line] = healed.wait_lines(1)
        assert (line["id"], line["attempt"]) == (image_id, 1)
        assert healed.wait_exit() == 0
        assert confirmed(healed)["acked"] == 1, healed.explain("ack not confirmed")
        wait_pending_zero(target, group)
        assert wait_dead_letters(target, group, 0) == []
    finally:
        healed.close()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_example_receives_an_event_over_grpcs_default_4_mib(
    lang: str, built: set[str], wahook_factory: type[WahookFactory], certs: Certs, tmp_path: Path
) -> None:
    """A 3 MB text message (under the 4 MiB body cap) becomes a ~6 MB event (typed text and
    raw JSON): each example's 9 MiB receive limit, announced as max_receive_bytes, takes it."""
    build(lang, built)
    ctx = certs.client_context()
    data_dir = tmp_path / "data"
    server = wahook_factory.start(data_dir)
    target = server.grpc_target
    group = f"{lang}-large"
    empty = len(message("wamid.T-0301", "text", {"body": ""}, {}).body)
    size = 3_000_000
    large = message("wamid.T-0301", "text", {"body": "x" * (size - empty)}, {})
    assert len(large.body) == size
    after = message("wamid.T-0302", "text", {"body": "after"}, {"text": "after"})
    for f in (large, after):
        post(server, ctx, f.body)
    stored = stored_ids(target)

    example = Example(
        command(lang, target, group, "--count", "2"), tmp_path / "large.log", data_dir
    )
    try:
        got = example.wait_lines(2)
        assert [(line["id"], line["attempt"]) for line in got] == [
            (stored[large.key].id, 1),
            (stored[after.key].id, 1),
        ]
        assert len(got[0]["text"]) == size - empty
        assert example.wait_exit() == 0
        wait_pending_zero(target, group)
        req = service_pb2.ListDeadLettersRequest(consumer_group=group)
        assert list(stub_call(target, "ListDeadLetters", req).dead_letters) == []
    finally:
        example.close()
