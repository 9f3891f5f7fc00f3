"""``spc-bridge tail``: print the bridge's events as they arrive (an aiomqtt subscriber).

A broker that is not there, or goes away, is tried again with the bridge's backoff (1 s doubling to
30 s); a refused login or an unverifiable certificate ends it with one line (TailError), as waiting
cannot fix those.
"""

import asyncio
import ssl
import sys
import threading
from pathlib import Path

import aiomqtt

from bridge.broker_errors import connect_failure
from bridge.config import BrokerUrl, parse_broker_url
from bridge.contract import ROOT
from bridge.service.mqtt import RECONNECT_MAX_S, RECONNECT_MIN_S

STOP_POLL_S = 0.5  # how often a wait looks at the stop event


class TailError(Exception):
    """tail cannot go on; the message says why and what to do."""


def topic_filter(text: str) -> str:
    """A characteristic id means all its events (``spc/<id>/#``); anything else is a filter."""
    return f"{ROOT}/{text}/#" if text.isdigit() else text


def _status(text: str) -> None:
    print(f"tail: {text}", file=sys.stderr, flush=True)


def _tls(broker: BrokerUrl, ca_file: Path | None) -> ssl.SSLContext | None:
    if not broker.tls:
        return None
    if ca_file is not None and not ca_file.is_file():
        raise TailError(f"--ca-file {ca_file}: no such file")
    return ssl.create_default_context(cafile=ca_file)


async def _wait(stop: threading.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not stop.is_set() and (left := end - loop.time()) > 0:
        await asyncio.sleep(min(left, STOP_POLL_S))


async def _print_events(client: aiomqtt.Client, stop: threading.Event) -> None:
    """Print every message until ``stop`` is set (MqttError when the connection is lost)."""
    messages = aiter(client.messages)
    while not stop.is_set():
        try:
            message = await asyncio.wait_for(anext(messages), STOP_POLL_S)
        except TimeoutError:
            continue
        payload = message.payload.decode("utf-8", "replace") if isinstance(message.payload, bytes) else message.payload
        print(f"{message.topic} {payload}", flush=True)


async def _tail(broker: BrokerUrl, selection: str, stop: threading.Event, tls: ssl.SSLContext | None) -> None:
    backoff = 0.0
    connections = 0
    while not stop.is_set():
        up = False  # connected: a failure from now on is a lost connection
        try:
            async with aiomqtt.Client(
                broker.host, broker.port, username=broker.username, password=broker.password,
                transport=broker.transport, websocket_path=broker.path if broker.transport == "websockets" else None,
                tls_context=tls,
            ) as client:
                up = True
                granted = await client.subscribe(topic_filter(selection), qos=1)
                if any(getattr(code, "is_failure", code == 0x80) for code in granted):
                    raise TailError(f"the broker at {broker} refused the subscription to {topic_filter(selection)}: "
                                    "tail with a user that may read it (a dashboard's)")
                connections += 1
                backoff = 0.0
                if connections == 1:
                    _status(f"{broker} {topic_filter(selection)} (Ctrl-C stops it)")
                else:
                    _status(f"connected again to {broker}; events published meanwhile are not shown")
                await _print_events(client, stop)
                return
        except aiomqtt.MqttError as error:
            if up:
                why = f"lost the connection to {broker}"
            else:
                failure = connect_failure(error, broker)
                if failure.permanent:
                    raise TailError(failure.text) from error
                why = failure.text
        backoff = min(RECONNECT_MAX_S, backoff * 2 or RECONNECT_MIN_S)
        _status(f"{why}; next attempt in {backoff:g} s (Ctrl-C stops it)")
        await _wait(stop, backoff)


def tail(url: str, selection: str, stop: threading.Event, ca_file: Path | None = None) -> int:
    """Print every event matching ``selection`` until ``stop`` is set; the exit code. ``ca_file``
    verifies an mqtts:// or wss:// broker (else the system's CAs). TailError when it cannot go on."""
    broker = parse_broker_url(url)
    asyncio.run(_tail(broker, selection, stop, _tls(broker, ca_file)))
    return 0
