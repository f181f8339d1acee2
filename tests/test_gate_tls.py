"""TLS between bridge and hub with a private CA, as docs/bridge-install.md sets it up, and
production refusing plain TCP."""

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.gate_hub import GateHub, HubOptions, ssl_context
from server.settings import SettingsError, load_settings
from tests.builders import make_community
from tests.gate_fixtures import start_sim_bridge

# A production configuration complete but for the hub's TLS (tests/test_production.py has the rest).
SECRETS = {"jwt_secret": "Zr8Qk3vX1pLm9TtY6wHc2NbF5sJd0GaE", "gate_secret_key": "uV7nC4xR2eW9kQ1mT6yB3hL8pZ5aD0sG",
           "wechat_secret": "9f3b27c4e1d84a6f0b5c7e2d91a8f634", "wechat_appid": "wx0123456789abcdef",
           "mongodb_uri": "mongodb://db1/?replicaSet=rs0", "redis_url": "redis://cache:6379/0"}


def test_production_refuses_plain_tcp_to_bridges_unless_allowed(tmp_path):
    with pytest.raises(SettingsError) as error:
        load_settings(mode="production", data_dir=tmp_path, **SECRETS)
    assert "GATE_TLS_CERT" in str(error.value)
    assert load_settings(mode="production", data_dir=tmp_path, gate_allow_plain=True, **SECRETS)
    assert load_settings(mode="production", data_dir=tmp_path, gate_tls_cert="hub.pem",
                         gate_tls_key="hub.key", **SECRETS)
    with pytest.raises(SettingsError):
        load_settings(data_dir=tmp_path, gate_tls_cert="hub.pem")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, issuer, public_key, signing_key, *, ca: bool, sans=()):
    # Key identifiers too: Python's default TLS context verifies strictly (X509_STRICT).
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   signing_key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def private_ca(directory, name: str):
    """(CA cert path, CA key) of a fresh private CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(_name(name), _name(name), key.public_key(), key, ca=True)
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, (cert, key)


def hub_certificate(directory, ca, host: str = "gate-hub.example.internal"):
    """(cert path, key path) of a hub certificate the CA signed, for `host` and 127.0.0.1."""
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(_name(host), ca_cert.subject, key.public_key(), ca_key, ca=False,
                        sans=(x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))))
    cert_path, key_path = directory / "hub.pem", directory / "hub.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.asyncio
async def test_a_bridge_trusts_a_hub_certified_by_its_private_ca_and_no_other(app, tmp_path):
    c = await make_community(app, "tls")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    ca_path, ca = private_ca(tmp_path, "xiaoqu-gate-ca")
    stranger_path, _ = private_ca(tmp_path, "someone-else")
    cert, key = hub_certificate(tmp_path, ca)
    hub = GateHub(app, HubOptions(ssl_context=ssl_context(str(cert), str(key))))
    port = await hub.start(0, "127.0.0.1")
    (tmp_path / "trusting").mkdir()
    (tmp_path / "doubting").mkdir()
    trusting = await start_sim_bridge(tmp_path / "trusting", port, creds["bridge_id"],
                                      creds["secret"], tls=True, ca_file=str(ca_path),
                                      server_hostname="gate-hub.example.internal")
    doubting = await start_sim_bridge(tmp_path / "doubting", port, creds["bridge_id"],
                                      creds["secret"], tls=True, ca_file=str(stranger_path),
                                      server_hostname="gate-hub.example.internal")
    try:
        await trusting.bridge.wait(lambda: trusting.bridge.sessions == 1)
        await trusting.bridge.wait(lambda: trusting.bridge.store.config() is not None)
        await doubting.bridge.wait(lambda: doubting.bridge.failures >= 2)
        assert doubting.bridge.sessions == 0
        assert "CERTIFICATE_VERIFY_FAILED" in doubting.bridge.last_failure
    finally:
        await trusting.stop()
        await doubting.stop()
        await hub.stop()
