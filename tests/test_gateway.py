"""``spc-bridge gateway``: the seed's WebSocket protocol, fed from MQTT, with the broker, the bridge and the
gateway as real processes and a client written as the seed's documentation writes one."""

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bridge.contract import sample_topic
from tests.brokers import EmbeddedBrokerThread, MqttProbe
from bridge.gateway.connections import MAX_SUBSCRIPTIONS
from tests.dashboards import (
    BORE, BORE_TOPIC, REASON_CODE, SHAFT, SHAFT_TOPIC, EventWatcher, GatewayProcess, SeedClient, acknowledge,
    gauge_readings, removals, rss_mib, start_bridge, wait_for_log,
)
from tests.processes import REPO, ChildProcess

SEED_SAMPLE = {"sample_id", "characteristic_id", "timestamp", "value", "zone", "in_control"}
SEED_VIOLATION = {"violation_id", "characteristic_id", "sample_id", "rule_id", "rule_name", "severity"}
SEED_ACK = {"violation_id", "characteristic_id", "acknowledged", "ack_user", "ack_reason"}


@pytest.fixture
def bridge(embedded_broker: EmbeddedBrokerThread, tmp_path: Path) -> Iterator[ChildProcess]:
    """The bridge on the embedded broker (characteristics 1 and 2, fixed limits, rule 1)."""
    process = start_bridge(embedded_broker, tmp_path)
    try:
        yield process
    finally:
        process.stop()


def started(gateway: GatewayProcess) -> GatewayProcess:
    """Start a gateway process (bounded: until it has subscribed to the broker)."""
    gateway.start()
    return gateway


@pytest.fixture
def gateway(embedded_broker: EmbeddedBrokerThread, tmp_path: Path) -> Iterator[GatewayProcess]:
    """``spc-bridge gateway`` with the default heartbeat (30 s, 90 s) and no token."""
    process = started(GatewayProcess(tmp_path, embedded_broker))
    try:
        yield process
    finally:
        assert process.stop() == 0


def test_subscriber_gets_sample_violation_and_ack_update_of_its_characteristic_only(
        embedded_broker: EmbeddedBrokerThread, bridge: ChildProcess, gateway: GatewayProcess) -> None:
    """The seed's example client: subscribe to [1], get sample, violation and ack_update for 1, nothing for 2."""

    async def scenario() -> None:
        client = await SeedClient.open(gateway.url())
        assert await client.request({"type": "subscribe", "characteristic_ids": [SHAFT]}, "subscribed") == {
            "type": "subscribed", "characteristic_ids": [SHAFT]}
        with EventWatcher(embedded_broker, BORE) as bore:
            await asyncio.to_thread(gauge_readings, embedded_broker, BORE_TOPIC, 0.5)
            await asyncio.to_thread(bore.violations, 1)  # characteristic 2's events have passed the gateway
        await asyncio.to_thread(gauge_readings, embedded_broker, SHAFT_TOPIC, 10.0, 14.0)
        first = await client.until("sample", value=10.0)
        second = await client.until("sample", value=14.0)
        violation = await client.until("violation")
        response = await asyncio.to_thread(acknowledge, embedded_broker, violation["payload"]["violation_id"],
                                           "Process adjusted")
        assert response["status"] == "ok"
        ack = await client.until("ack_update")
        await client.close()

        for message in (first, second, violation, ack):
            assert set(message) == {"type", "payload"}
        assert SEED_SAMPLE <= set(first["payload"])
        assert first["payload"]["zone"] == "zone_c_upper" and first["payload"]["in_control"] is True
        assert second["payload"]["zone"] == "beyond_ucl" and second["payload"]["in_control"] is False
        assert SEED_VIOLATION <= set(violation["payload"])
        assert violation["payload"] | {"violation_id": 0} == {
            "violation_id": 0, "characteristic_id": SHAFT, "sample_id": second["payload"]["sample_id"],
            "rule_id": 1, "rule_name": violation["payload"]["rule_name"], "severity": "CRITICAL", "chart": "i"}
        assert SEED_ACK <= set(ack["payload"])
        assert ack["payload"] | {"ack_time": None} == {
            "violation_id": violation["payload"]["violation_id"], "characteristic_id": SHAFT,
            "acknowledged": True, "ack_user": "operator", "ack_reason": "Process adjusted", "ack_time": None,
            "reason_code": REASON_CODE, "assignable_cause": False}
        assert [m["payload"]["characteristic_id"] for m in client.received if "payload" in m] == [SHAFT] * 4

    asyncio.run(scenario())


def test_unsubscribe_stops_a_characteristics_events(embedded_broker: EmbeddedBrokerThread, bridge: ChildProcess,
                                                    gateway: GatewayProcess) -> None:
    """After ``unsubscribe`` [1] a client subscribed to [1, 2] gets the events of 2 only."""

    async def scenario() -> None:
        client = await SeedClient.open(gateway.url())
        await client.request({"type": "subscribe", "characteristic_ids": [SHAFT, BORE]}, "subscribed")
        assert await client.request({"type": "unsubscribe", "characteristic_ids": [SHAFT]}, "unsubscribed") == {
            "type": "unsubscribed", "characteristic_ids": [SHAFT]}
        with MqttProbe(embedded_broker, user="dashboard") as watcher:
            watcher.subscribe(sample_topic(SHAFT))
            await asyncio.to_thread(gauge_readings, embedded_broker, SHAFT_TOPIC, 10.0)
            assert await asyncio.to_thread(watcher.wait_for, sample_topic(SHAFT), 1)
        await asyncio.to_thread(gauge_readings, embedded_broker, BORE_TOPIC, 5.0)
        sample = await client.until("sample")
        await client.close()
        assert sample["payload"]["characteristic_id"] == BORE
        assert [m["type"] for m in client.received] == ["subscribed", "unsubscribed", "sample"]

    asyncio.run(scenario())


def test_ping_pong(gateway: GatewayProcess) -> None:
    """``ping`` is answered with the seed's ``pong``."""

    async def scenario() -> None:
        client = await SeedClient.open(gateway.url())
        assert await client.request({"type": "ping"}, "pong") == {"type": "pong"}
        await client.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(("message", "error"), [
    ("not json", "not JSON"),
    (b'{"type": "ping"}', "binary frames are not part of the protocol"),
    ("[1, 2]", "a message is a JSON object"),
    ({"characteristic_ids": [1]}, "Message must contain 'type' field"),
    ({"type": "dance"}, "Unknown message type: 'dance'"),
    ({"type": 7}, "Unknown message type: 7"),
    ({"type": "subscribe"}, "bad subscribe message: characteristic_ids: Field required"),
    ({"type": "subscribe", "characteristic_ids": 1}, "characteristic_ids: Input should be a valid list"),
    ({"type": "subscribe", "characteristic_ids": ["1"]}, "characteristic_ids.0: Input should be a valid integer"),
    ({"type": "subscribe", "characteristic_ids": [True]}, "characteristic_ids.0: Input should be a valid integer"),
    ({"type": "subscribe", "characteristic_ids": [1.5]}, "characteristic_ids.0: Input should be a valid integer"),
    ({"type": "unsubscribe", "characteristic_ids": [0]}, "characteristic_ids.0: Input should be greater than 0"),
    ({"type": "subscribe", "characteristic_ids": [2**31]}, "characteristic_ids.0: Input should be less than"),
    ({"type": "subscribe", "characteristic_ids": list(range(1, 1002))}, "List should have at most 1000 items"),
    pytest.param("[" * 30_000, "the message nests deeper than 8 levels", id="nested 30,000 deep"),
    pytest.param('{"type": "ping", "x": ' + "[" * 9 + "]" * 9 + "}", "the message nests deeper than 8 levels",
                 id="nested 10 deep"),
    pytest.param('{"type": "ping", "x": "' + "a" * 70_000 + '"}', "the message is 70025 bytes; at most 65536",
                 id="70 kB"),
])
def test_bad_message_gets_an_error_and_the_connection_stays(gateway: GatewayProcess,
                                                             message: str | bytes | dict[str, Any], error: str) -> None:
    """An ``error`` that says what is wrong (``message``, and ``payload.message``); the client goes on."""

    async def scenario() -> None:
        client = await SeedClient.open(gateway.url())
        reply = await client.request(message, "error")
        assert set(reply) == {"type", "message", "payload"}
        assert error in reply["message"] and reply["payload"] == {"message": reply["message"]}
        assert await client.request({"type": "subscribe", "characteristic_ids": [SHAFT]}, "subscribed")
        assert await client.request({"type": "ping"}, "pong")
        await client.close()

    asyncio.run(scenario())


def test_a_message_past_the_frame_limit_closes_the_connection(gateway: GatewayProcess) -> None:
    """Past 1 MiB the gateway reads no further: the connection is closed with 1009 (message too big)."""

    async def scenario() -> None:
        client = await SeedClient.open(gateway.url())
        await client.send('{"type": "ping", "x": "' + "a" * (2 * 2**20) + '"}')
        with pytest.raises(ConnectionClosed) as closed:
            await client.next()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

    asyncio.run(scenario())
    assert "Traceback" not in gateway.output()


def ids(start: int, count: int = 1000) -> list[int]:
    """``count`` characteristic ids from ``start`` on."""
    return list(range(start, start + count))


def test_subscriptions_per_client_are_bounded(embedded_broker: EmbeddedBrokerThread, bridge: ChildProcess,
                                              gateway: GatewayProcess) -> None:
    """1,000 characteristics a client; a subscribe past that is an error and changes nothing; after an
    unsubscribe there is room again, and events keep flowing."""
    assert MAX_SUBSCRIPTIONS == 1000

    async def scenario() -> None:
        client = await SeedClient.open(gateway.url())
        assert (await client.request({"type": "subscribe", "characteristic_ids": ids(SHAFT)}, "subscribed")
                )["characteristic_ids"] == ids(SHAFT)
        refused = await client.request({"type": "subscribe", "characteristic_ids": [5000]}, "error")
        assert "at most 1000 characteristics" in refused["message"]
        await client.request({"type": "subscribe", "characteristic_ids": [SHAFT, BORE]}, "subscribed")  # had them
        await client.request({"type": "unsubscribe", "characteristic_ids": [BORE]}, "unsubscribed")
        await client.request({"type": "subscribe", "characteristic_ids": [5000]}, "subscribed")
        await asyncio.to_thread(gauge_readings, embedded_broker, SHAFT_TOPIC, 10.0)
        assert (await client.until("sample"))["payload"]["characteristic_id"] == SHAFT
        await client.close()

    asyncio.run(scenario())


def test_subscriptions_cost_bounded_memory_given_back_on_leaving(gateway: GatewayProcess) -> None:
    """A client asking for 10**6 ids (1,000 messages of 1,000) gets 1,000 and an error for the rest: the
    gateway's memory hardly grows. Rounds of 20 clients, each on 1,000 ids of its own, that unsubscribe or
    leave: later rounds reuse what earlier ones gave back."""

    async def greedy() -> None:
        client = await SeedClient.open(gateway.url())
        await client.request({"type": "subscribe", "characteristic_ids": ids(1)}, "subscribed")
        for start in range(1001, 10**6, 1000):
            reply = await client.request({"type": "subscribe", "characteristic_ids": ids(start)}, "error")
            assert "at most 1000 characteristics" in reply["message"]
        assert await client.request({"type": "ping"}, "pong")
        await client.close()

    async def round_of_clients(number: int) -> None:
        clients = [await SeedClient.open(gateway.url()) for _ in range(20)]
        for k, client in enumerate(clients):
            await client.request({"type": "subscribe", "characteristic_ids": ids(1 + 1000 * (20 * number + k))},
                                 "subscribed")
        for k, client in enumerate(clients):
            if k % 2:
                await client.request({"type": "unsubscribe", "characteristic_ids": ids(1 + 1000 * (20 * number + k))},
                                     "unsubscribed")
            await client.close()

    before = rss_mib(gateway.pid)
    asyncio.run(greedy())
    assert rss_mib(gateway.pid) - before < 20
    asyncio.run(round_of_clients(0))
    after_one = rss_mib(gateway.pid)
    for number in range(1, 6):
        asyncio.run(round_of_clients(number))
    assert rss_mib(gateway.pid) - after_one < 10, (before, after_one, rss_mib(gateway.pid))
    assert "Traceback" not in gateway.output()


def test_heartbeat_timeout_drops_a_silent_client(embedded_broker: EmbeddedBrokerThread, tmp_path: Path) -> None:
    """With a 0.5 s interval and a 1.5 s timeout, a client that sends nothing is closed (4408) 1.5 to 2 s after
    its last message (1 s allowed for scheduling); one that pings stays."""
    gateway = started(GatewayProcess(tmp_path, embedded_broker, "--heartbeat-interval", "0.5",
                                     "--heartbeat-timeout", "1.5"))

    async def scenario() -> None:
        silent = await SeedClient.open(gateway.url())
        pinging = await SeedClient.open(gateway.url())
        clock = asyncio.get_running_loop().time
        await silent.send({"type": "subscribe", "characteristic_ids": [SHAFT]})
        last_message = clock()

        async def closed_after() -> tuple[float, ConnectionClosed]:
            with pytest.raises(ConnectionClosed) as closed:
                await silent.until("never", timeout=10)
            return clock() - last_message, closed.value

        watch = asyncio.create_task(closed_after())
        for _ in range(10):  # 3 s, twice the timeout
            await pinging.request({"type": "ping"}, "pong")
            await asyncio.sleep(0.3)
        silence, closed = await watch
        assert 1.5 <= silence < 3.0
        assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (4408, "heartbeat timeout")
        assert [m["type"] for m in silent.received] == ["subscribed"]
        assert await pinging.request({"type": "ping"}, "pong")
        await pinging.close()

    try:
        asyncio.run(scenario())
        assert removals(wait_for_log(gateway, "removed: closed (1000)")) == {
            1: "silent for more than 1.5 s", 2: "closed (1000)"}
    finally:
        assert gateway.stop() == 0


def test_token_required_when_auth_is_on(embedded_broker: EmbeddedBrokerThread, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``--token`` (repeatable) or SPC_BRIDGE_GATEWAY_TOKEN: no token or a wrong one is refused with HTTP 401."""

    async def refused(url: str) -> int:
        with pytest.raises(InvalidStatus) as error:
            await SeedClient.open(url)
        return error.value.response.status_code

    async def accepted(url: str) -> None:
        client = await SeedClient.open(url)
        assert await client.request({"type": "ping"}, "pong")
        await client.close()

    async def scenario(gateway: GatewayProcess, good: list[str]) -> None:
        assert await refused(gateway.url()) == 401
        assert await refused(gateway.url("wrong")) == 401
        assert await refused(gateway.url("")) == 401
        assert await refused(gateway.url().replace("/ws", "/other") + "?token=" + good[0]) == 404
        for token in good:
            await accepted(gateway.url(token))

    with_options = started(GatewayProcess(tmp_path, embedded_broker, "--token", "s3cret", "--token", "other",
                                          name="options"))
    try:
        asyncio.run(scenario(with_options, ["s3cret", "other"]))
    finally:
        assert with_options.stop() == 0
    assert "refused ('127.0.0.1'" in with_options.output() and "s3cret" not in with_options.output()

    monkeypatch.setenv("SPC_BRIDGE_GATEWAY_TOKEN", "from-env, second")
    from_env = started(GatewayProcess(tmp_path, embedded_broker, name="env"))
    try:
        asyncio.run(scenario(from_env, ["from-env", "second"]))
    finally:
        assert from_env.stop() == 0


def test_broadcast_to_one_characteristic_or_to_all(embedded_broker: EmbeddedBrokerThread, bridge: ChildProcess,
                                                   gateway: GatewayProcess) -> None:
    """Two clients on different characteristics get only their own events; a gateway notice (the broker was
    lost) goes to every client; after the broker is back, events flow again."""

    async def scenario() -> None:
        one = await SeedClient.open(gateway.url())
        two = await SeedClient.open(gateway.url())
        both = await SeedClient.open(gateway.url())
        await one.request({"type": "subscribe", "characteristic_ids": [SHAFT]}, "subscribed")
        await two.request({"type": "subscribe", "characteristic_ids": [BORE]}, "subscribed")
        await both.request({"type": "subscribe", "characteristic_ids": [SHAFT, BORE]}, "subscribed")
        await asyncio.to_thread(gauge_readings, embedded_broker, SHAFT_TOPIC, 10.5)
        await asyncio.to_thread(gauge_readings, embedded_broker, BORE_TOPIC, 5.5)
        assert (await one.until("sample"))["payload"]["value"] == 10.5
        assert (await two.until("sample"))["payload"]["value"] == 5.5
        assert {(await both.until("sample"))["payload"]["value"] for _ in range(2)} == {10.5, 5.5}

        await asyncio.to_thread(embedded_broker.stop)
        notices = [await client.until("error") for client in (one, two, both)]
        for client in (one, two, both):  # the heartbeat keeps them while the broker is away
            await client.request({"type": "ping"}, "pong")
        await asyncio.to_thread(embedded_broker.start)
        await asyncio.to_thread(wait_for_log, gateway, "MQTT subscribed", 30.0, 2)
        await asyncio.to_thread(wait_for_log, bridge, "MQTT Connected", 30.0, 2)
        await asyncio.to_thread(gauge_readings, embedded_broker, SHAFT_TOPIC, 10.25)
        assert (await one.until("sample", timeout=30))["payload"]["value"] == 10.25
        for client in (one, two, both):
            await client.close()

        assert all("lost the MQTT broker" in notice["message"] for notice in notices)
        assert [m["type"] for m in one.received] == ["subscribed", "sample", "error", "pong", "sample"]
        assert [m["type"] for m in two.received] == ["subscribed", "sample", "error", "pong"]

    asyncio.run(scenario())


def test_dead_and_stalled_connections_are_removed(embedded_broker: EmbeddedBrokerThread, tmp_path: Path) -> None:
    """A client whose connection dies is removed; one that stops reading is dropped once ``--max-pending``
    messages wait for it (50: a reader on a busy machine may lag a few); the client that reads
    gets every event meanwhile."""
    stalled_gateway = started(GatewayProcess(tmp_path, embedded_broker, "--max-pending", "50", name="stalled"))
    events = 300
    # The gateway passes unknown fields through: big events fill the socket buffers fast (random: compression
    # is on, permessage-deflate, and would shrink a repeated character to nothing).
    padding = base64.b64encode(os.urandom(48_000)).decode()

    async def scenario() -> None:
        reader = await SeedClient.open(stalled_gateway.url())
        dead = await SeedClient.open(stalled_gateway.url())
        stalled = await SeedClient.open(stalled_gateway.url(), receive_buffer=4096)
        for client in (reader, dead, stalled):
            await client.request({"type": "subscribe", "characteristic_ids": [SHAFT]}, "subscribed")
        dead.websocket.transport.abort()  # gone without a close frame, as a crashed browser
        await asyncio.to_thread(wait_for_log, stalled_gateway, "client 2 (127.0.0.1:")

        def publish() -> None:
            with MqttProbe(embedded_broker, user="bridge") as bridge:
                for number in range(1, events + 1):
                    bridge.publish(sample_topic(SHAFT), json.dumps({
                        "sample_id": number, "characteristic_id": SHAFT, "timestamp": "2026-11-26T12:00:00Z",
                        "value": 10.0, "zone": "zone_c_upper", "in_control": True, "n": 1, "note": padding}))

        # The reader reads while the events are published, as a dashboard does: reading only afterwards, it
        # would let 50 events wait for it and be dropped as too slow itself.
        publishing = asyncio.create_task(asyncio.to_thread(publish))
        try:
            ids = [(await reader.until("sample"))["payload"]["sample_id"] for _ in range(events)]
        except TimeoutError:
            if publishing.done() and publishing.exception() is not None:
                raise publishing.exception() from None  # the publisher failed: say why, not the reader's wait
            raise TimeoutError(f"the reader got {len(reader.received)} messages; publisher done: "
                               f"{publishing.done()}") from None
        await publishing
        assert ids == list(range(1, events + 1))
        await reader.close()

    try:
        asyncio.run(scenario())
        wait_for_log(stalled_gateway, "too slow: 50 messages waiting")
        assert removals(wait_for_log(stalled_gateway, "removed: closed (1000)")) == {
            1: "closed (1000)", 2: "closed (1006)", 3: "too slow: 50 messages waiting"}
    finally:
        assert stalled_gateway.stop() == 0


@pytest.mark.parametrize(("options", "error"), [
    (["--heartbeat-interval", "0"], "heartbeat-interval: must be a number of seconds > 0"),
    (["--heartbeat-interval", "60", "--heartbeat-timeout", "30"], "must be at least heartbeat-interval"),
    (["--token", ""], "token: must not be empty"),
    (["--broker", "http://x"], "unknown scheme 'http'"),
    (["--max-pending", "0"], "max-pending: must be at least 1"),
])
def test_bad_options_are_one_line_errors(options: list[str], error: str) -> None:
    """A wrong option is a one-line error and exit code 2."""
    done = subprocess.run([sys.executable, "-m", "bridge", "gateway", *options], cwd=REPO, capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 2 and error in done.stderr and len(done.stderr.splitlines()) == 1


def test_port_in_use_is_a_one_line_error(embedded_broker: EmbeddedBrokerThread) -> None:
    """A port already taken (here: the broker's) is reported in one line, exit code 2."""
    done = subprocess.run([sys.executable, "-m", "bridge", "gateway", "--broker", embedded_broker.url("dashboard"),
                           "--port", str(embedded_broker.port)], cwd=REPO, capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == f"spc-bridge: port {embedded_broker.port} on 127.0.0.1 is already in use"
