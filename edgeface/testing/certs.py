"""A small certificate authority for the broker's mutual TLS (test fleets, labs, first deployments).

The broker takes a client's identity from its certificate CN (``use_identity_as_username``), so a
device certificate's CN is the device id. Production fleets may use their own PKI instead; see
deploy/mosquitto/README.md for the openssl equivalent of each step.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Write both as PEM; the key file is created with mode 0600."""
        Path(cert_path).write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        key_pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgeface"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def make_ca(common_name: str = "edgeface CA", days: int = 3650) -> Pair:
    """A self-signed CA that signs the broker's and every client's certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Pair(cert, key)


def issue(
    ca: Pair,
    common_name: str,
    *,
    server_names: tuple[str, ...] = (),
    days: int = 825,
    not_after: dt.datetime | None = None,
) -> Pair:
    """A leaf certificate signed by ``ca``: a server certificate when ``server_names`` (DNS names or IP
    addresses) are given, else a client certificate whose CN is the identity (the device id)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after or now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if server_names:
        alt: list[x509.GeneralName] = []
        for n in server_names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                alt.append(x509.DNSName(n))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return Pair(builder.sign(ca.key, hashes.SHA256()), key)


def write_pki(
    folder: Path,
    *,
    clients: tuple[str, ...],
    server_names: tuple[str, ...] = ("localhost", "127.0.0.1"),
    ca: Pair | None = None,
    central: tuple[str, ...] = (),
) -> dict[str, Path]:
    """Write ``ca.crt``, ``server.crt/.key`` and ``<client>.crt/.key`` for each client identity, and
    ``central-ca.crt`` with ``<name>.crt/.key`` for each central account (server, ingest), signed by a
    second CA: the broker's central listener trusts only that one, so no unit certificate connects there.

    Returns the paths by name (``ca``, ``central-ca``, ``server.crt``, ``server.key``, ``<client>.crt``,
    ...). The CA keys are not written: a lab that needs more certificates later keeps the :class:`Pair`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ca = ca or make_ca()
    central_ca = make_ca("edgeface central CA")
    paths = {"ca": folder / "ca.crt", "central-ca": folder / "central-ca.crt"}
    paths["ca"].write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    paths["central-ca"].write_bytes(central_ca.cert.public_bytes(serialization.Encoding.PEM))
    issue(ca, server_names[0], server_names=server_names).write(folder / "server.crt", folder / "server.key")
    paths["server.crt"], paths["server.key"] = folder / "server.crt", folder / "server.key"
    for signer, names in ((ca, clients), (central_ca, central)):
        for cn in names:
            issue(signer, cn).write(folder / f"{cn}.crt", folder / f"{cn}.key")
            paths[f"{cn}.crt"], paths[f"{cn}.key"] = folder / f"{cn}.crt", folder / f"{cn}.key"
    return paths
