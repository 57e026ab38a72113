"""TLS certificates and SuperNode keys for one run on loopback, made on the spot (lesson 6).

Flower authenticates SuperNodes only over TLS (Flower docs, "Authenticate SuperNodes"). For a run,
:func:`make_credentials` writes into a folder of the caller's (a temporary one, deleted after the run):

- a certificate authority (CA): a self-signed certificate and its key. Every SuperNode and the
  ``flwr`` command trust the SuperLink because the CA signed its certificate (``--root-certificates``);
- the SuperLink's certificate for ``127.0.0.1``/``localhost``, signed by the CA
  (``--ssl-certfile``, ``--ssl-keyfile``, ``--ssl-ca-certfile``);
- one elliptic-curve key pair (NIST P-384, as in Flower's example) per SuperNode, in OpenSSH format
  as ``ssh-keygen -t ecdsa -b 384`` writes it: the private key stays with the node
  (``--auth-supernode-private-key``), the public key is registered with the SuperLink (``flwr supernode register``).

Nothing is downloaded and nothing is kept: the keys live as long as the folder. The ``cryptography``
package is the one Flower itself uses.
"""

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fedkd_lessons.engine.validation import Each, Instance, checked_arguments

DIRECTORY = Instance((str, Path))

VALID_FOR = datetime.timedelta(days=1)  # a run lasts minutes; nothing here should outlive the day


@dataclass(frozen=True)
class NodeKeys:
    """A SuperNode's key pair on disk: ``private`` (PEM) and ``public`` (OpenSSH, one line)."""

    private: Path
    public: Path


@dataclass(frozen=True)
class Credentials:
    """Paths of everything :func:`make_credentials` wrote."""

    ca_certificate: Path
    server_certificate: Path
    server_key: Path
    nodes: dict[str, NodeKeys]


def _write_private_key(key, path: Path, form=serialization.PrivateFormat.PKCS8) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption()))
    path.chmod(0o600)  # a private key readable by its owner only


def _certificate(subject: str, public_key, issuer: str, signing_key, *, is_ca: bool, host: str | None = None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate a clock a little behind
               .not_valid_after(now + VALID_FOR)
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
    if host is not None:  # TLS clients check the address they dialled against these names
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@checked_arguments(directory=DIRECTORY, name=Instance(str))
def make_node_keys(directory, name: str) -> NodeKeys:
    """A fresh P-384 key pair for SuperNode ``name`` in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    keys = NodeKeys(directory / f"{name}.key", directory / f"{name}.pub")
    _write_private_key(key, keys.private, serialization.PrivateFormat.OpenSSH)  # as ssh-keygen writes it
    keys.public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                         serialization.PublicFormat.OpenSSH) + b"\n")
    return keys


@checked_arguments(directory=DIRECTORY, node_names=Each(Instance(str)), host=Instance(str))
def make_credentials(directory, node_names, host: str = "127.0.0.1") -> Credentials:
    """A CA, the SuperLink's certificate for ``host`` signed by it, and a key pair per name in
    ``node_names``, all written to ``directory``."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"host must be an IP address (the certificate names it), got {host!r}") from None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = _certificate("fedmd lesson CA", ca_key.public_key(), "fedmd lesson CA", ca_key, is_ca=True)
    server_key = ec.generate_private_key(ec.SECP384R1())
    server = _certificate(host, server_key.public_key(), "fedmd lesson CA", ca_key, is_ca=False, host=host)
    paths = Credentials(directory / "ca.crt", directory / "superlink.crt", directory / "superlink.key",
                        {name: make_node_keys(directory, name) for name in node_names})
    paths.ca_certificate.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.server_certificate.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_private_key(server_key, paths.server_key)
    return paths
