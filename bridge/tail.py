"""``spc-bridge tail``: print the bridge's events as they arrive (an aiomqtt subscriber)."""

import asyncio
import ssl
import sys
import threading
from pathlib import Path

import aiomqtt

from bridge.config import parse_broker_url
from bridge.contract import ROOT


def topic_filter(text: str) -> str:
    """A characteristic id means all its events (``spc/<id>/#``); anything else is a filter."""
    return f"{ROOT}/{text}/#" if text.isdigit() else text


async def _tail(url: str, selection: str, stop: threading.Event, ca_file: Path | None) -> None:
    broker = parse_broker_url(url)
    async with aiomqtt.Client(
        broker.host, broker.port, username=broker.username, password=broker.password,
        transport=broker.transport, websocket_path=broker.path if broker.transport == "websockets" else None,
        tls_context=ssl.create_default_context(cafile=ca_file) if broker.tls else None,
    ) as client:
        await client.subscribe(topic_filter(selection), qos=1)
        print(f"tail: {broker} {topic_filter(selection)} (Ctrl-C stops it)", file=sys.stderr, flush=True)
        messages = aiter(client.messages)
        while not stop.is_set():
            try:
                message = await asyncio.wait_for(anext(messages), 0.5)
            except TimeoutError:
                continue
            payload = message.payload.decode("utf-8", "replace") if isinstance(message.payload, bytes) else message.payload
            print(f"{message.topic} {payload}", flush=True)


def tail(url: str, selection: str, stop: threading.Event, ca_file: Path | None = None) -> int:
    """Print every event matching ``selection`` until ``stop`` is set; the exit code.
    ``ca_file`` verifies an mqtts:// or wss:// broker (else the system's CAs)."""
    asyncio.run(_tail(url, selection, stop, ca_file))
    return 0
