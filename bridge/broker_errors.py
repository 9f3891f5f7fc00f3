"""Why an MQTT connection failed, in words that say what to do; shared by the bridge, the gateway and tail.

paho and aiomqtt report a refused login as ``Not authorized`` or ``Unspecified error`` and a socket
error as its errno text. Both brokers answer a wrong password, an unknown user and a client id the
user may not take with the same CONNACK code, so the words name all three.
"""

import socket
import ssl
from typing import Any, NamedTuple

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from bridge.config import BrokerUrl

# CONNACK reason codes (MQTT 5 numbering; paho maps MQTT 3.1.1's 4 and 5 onto 134 and 135)
_BAD_LOGIN = {134, 135}
_BAD_CLIENT_ID = 133


class BrokerFailure(NamedTuple):
    """What went wrong, as one line; ``permanent`` when waiting cannot fix it (a login, a certificate)."""

    text: str
    permanent: bool


def refused(reason: Any, broker: BrokerUrl, client_id: str | None = None) -> BrokerFailure:
    """The broker answered the CONNECT with the failure ``reason`` (a paho ReasonCode or MQTT 3.1.1 code)."""
    code = getattr(reason, "value", reason)
    words = str(reason).lower() if hasattr(reason, "value") else f"code {code}"
    owner = f" (and that {broker.username} may use client id {client_id!r})" if client_id else ""
    if code in _BAD_LOGIN and broker.username is None:
        return BrokerFailure(f"the broker at {broker} refused an anonymous login: {words}; put the user's name and "
                             "password in the broker URL (mqtt://user:password@host:port)", True)
    if code in _BAD_LOGIN:
        return BrokerFailure(f"the broker at {broker} refused the login of user {broker.username}: {words}; "
                             f"check the password{owner}", True)
    if code == _BAD_CLIENT_ID:
        return BrokerFailure(f"the broker at {broker} refused client id {client_id!r}: give another one", True)
    return BrokerFailure(f"the broker at {broker} refused the connection: {words}", False)


def unreachable(error: BaseException, broker: BrokerUrl) -> BrokerFailure:
    """The connection to the broker could not be made (``error`` came from the socket, TLS or WebSocket)."""
    where = f"{broker.host}:{broker.port}"
    if isinstance(error, ssl.SSLCertVerificationError):
        return BrokerFailure(f"the TLS certificate of the broker at {broker} cannot be verified "
                             f"({error.verify_message}): give --ca-file with the CA that signed it, and connect "
                             "by a name or address the certificate holds", True)
    if isinstance(error, ssl.SSLError):
        return BrokerFailure(f"the TLS handshake with {where} failed ({error.reason or error}): check that "
                             f"{broker.port} is the broker's TLS port", False)
    if isinstance(error, ConnectionRefusedError):
        return BrokerFailure(f"nothing listens on {where}: start the broker, or check the port", False)
    if isinstance(error, socket.gaierror):
        return BrokerFailure(f"cannot resolve the broker's host {broker.host!r} ({error.strerror}): check the "
                             "broker URL", False)
    if isinstance(error, TimeoutError):
        return BrokerFailure(f"no answer from {where}: check the address and the firewall", False)
    if isinstance(error, ConnectionError) and type(error).__name__ == "WebsocketConnectionError":
        return BrokerFailure(f"the WebSocket handshake with {broker} failed ({error}): check the port and the "
                             "path (usually /mqtt)", False)
    if isinstance(error, (ConnectionResetError, BrokenPipeError)):
        return BrokerFailure(f"the broker at {where} closed the connection at once: check that {broker.port} is "
                             f"its MQTT port {'with' if broker.tls else 'without'} TLS", False)
    detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return BrokerFailure(f"cannot connect to the broker at {broker}: {detail}", False)


def connect_failure(error: aiomqtt.MqttError, broker: BrokerUrl) -> BrokerFailure:
    """What an aiomqtt client's failed ``async with`` means (aiomqtt keeps the socket error as the context)."""
    if isinstance(error, MqttConnectError):
        return refused(error.rc, broker)
    cause = error.__cause__ or error.__context__
    if isinstance(cause, OSError):
        return unreachable(cause, broker)
    return BrokerFailure(f"cannot connect to the broker at {broker}: {error}", False)
