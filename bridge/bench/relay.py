"""The yardstick: a bare aiomqtt relay that subscribes, parses the JSON and republishes it.

No SPC, no database: what any Python MQTT application pays to move a QoS 1 message through the
broker twice. It subscribes to the same topics as the bridge, on a persistent session, and
republishes each reading unchanged under ``bench/relay/`` at QoS 1, awaiting each publish as
aiomqtt's API invites. Run as ``python -m bridge.bench.relay``; SIGTERM stops it.
"""

import argparse
import asyncio
import json
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import aiomqtt

from bridge.bench.workload import read_topics
from bridge.config import parse_broker_url

OUTPUT_ROOT = "bench/relay"
READY = "relay ready"
SUBSCRIBE_CHUNK = 100
# Restarted on a session with a backlog, the broker sends the queued readings first and the SUBACK
# behind them: aiomqtt's default 10 s would give up while 100,000 readings stream in.
SUBSCRIBE_TIMEOUT_S = 120.0


async def relay(url: str, topics: Sequence[str], client_id: str) -> None:
    """Relay every message on ``topics`` until SIGTERM or SIGINT."""
    broker = parse_broker_url(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with aiomqtt.Client(broker.host, broker.port, username=broker.username,
                              password=broker.password, identifier=client_id,
                              clean_session=False) as client:
        # the bridge's sockets have Nagle's algorithm off; give the yardstick the same
        sock = client._client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(topics), SUBSCRIBE_CHUNK):
            await client.subscribe([(t, 1) for t in topics[start:start + SUBSCRIBE_CHUNK]],
                                   timeout=SUBSCRIBE_TIMEOUT_S)
        print(READY, flush=True)

        async def forward() -> None:
            async for message in client.messages:
                body = json.loads(message.payload)  # type: ignore[arg-type]
                await client.publish(f"{OUTPUT_ROOT}/{message.topic}", json.dumps(body), qos=1)

        task = asyncio.create_task(forward())
        await stop.wait()
        task.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the relay process."""
    parser = argparse.ArgumentParser(prog="python -m bridge.bench.relay")
    parser.add_argument("--broker", required=True, help="broker URL")
    parser.add_argument("--config", required=True, help="characteristics file: its topics")
    parser.add_argument("--client-id", default="bench-relay")
    args = parser.parse_args(argv)
    asyncio.run(relay(args.broker, read_topics(Path(args.config)), args.client_id))
    return 0


if __name__ == "__main__":
    sys.exit(main())
