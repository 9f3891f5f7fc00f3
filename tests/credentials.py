"""Throwaway credentials for the test brokers: one user per role with a known password, and a CA with a
server certificate for 127.0.0.1 and a client certificate."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.users import User, UserDirectory

# One user per role, named after it; a gauge publishes on these (the stream's and the tests' gauge topics).
GAUGE_TOPICS = ("line/#", "t/#", "gauges/g1/#")
EDGE_NODES = ("Plant1/Line3",)  # the Sparkplug B edge node the edge user speaks for
ROLE_USERS = (
    User("admin", "admin"),
    User("bridge", "bridge"),
    User("gauge", "gauge", GAUGE_TOPICS),
    User("dashboard", "dashboard"),
    User("operator", "operator"),
    User("engineer", "engineer"),
    User("edge", "edge", edge_nodes=EDGE_NODES),
)


def password(name: str) -> str:
    """The password of test user `name`."""
    return f"{name}-password"


def create_role_users(path: Path) -> Path:
    """Write ROLE_USERS into the users directory `path` (broker.users) and return it."""
    directory = UserDirectory(path)
    for user in ROLE_USERS:
        directory.add(user, password(user.name))
    return path


@dataclass(frozen=True)
class Certificates:
    """PEM files: a CA, a server certificate for 127.0.0.1 and localhost, and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def create(cls, path: Path) -> Certificates:
        """Create the CA and both certificates in `path`."""
        path.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "spc-bridge test CA")])
        ca = _certificate(ca_name, ca_key, ca_name, ca_key, [(x509.BasicConstraints(ca=True, path_length=0), True),
                                                            (_key_usage(cert_sign=True), True)])
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = _certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), server_key,
                              ca_name, ca_key, [
                                  (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                                x509.DNSName("localhost")]), False),
                                  (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
                                  (_key_usage(cert_sign=False), True)])
        client_key = ec.generate_private_key(ec.SECP256R1())
        client = _certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bridge")]), client_key,
                              ca_name, ca_key, [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
                                                (_key_usage(cert_sign=False), True)])
        certs = cls(path / "ca.crt", path / "server.crt", path / "server.key", path / "client.crt", path / "client.key")
        for file, certificate in ((certs.ca, ca), (certs.server_cert, server), (certs.client_cert, client)):
            file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        for file, key in ((certs.server_key, server_key), (certs.client_key, client_key)):
            file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return certs


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=not cert_sign, key_cert_sign=cert_sign,
                         crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def _certificate(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                 issuer_key: ec.EllipticCurvePrivateKey,
                 extensions: list[tuple[x509.ExtensionType, bool]]) -> x509.Certificate:
    """A certificate valid from an hour ago for a day."""
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1)))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    return builder.sign(issuer_key, hashes.SHA256())
