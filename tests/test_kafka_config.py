"""Unit tests: Kafka SASL and TLS settings mapped to aiokafka and Faust options."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from feedamp.config import Settings
from feedamp.kafka.config import faust_security, kafka_client_kwargs
from feedamp.kafka.transport import Producer, aiokafka_producer, transport_class


def settings(**env: str) -> Settings:
    return Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k1:9093,k2:9093", **env})


def test_plaintext_by_default():
    s = settings()
    assert kafka_client_kwargs(s) == {
        "bootstrap_servers": "k1:9093,k2:9093", "security_protocol": "PLAINTEXT",
    }  # fmt: skip
    assert faust_security(s) == {}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "scram-sha-512"])
def test_sasl_plaintext(mechanism):
    s = settings(KAFKA_SECURITY_PROTOCOL="sasl_plaintext", KAFKA_SASL_MECHANISM=mechanism,
                 KAFKA_SASL_USERNAME="feedamp", KAFKA_SASL_PASSWORD="s3cret")  # fmt: skip
    kwargs = kafka_client_kwargs(s)
    assert kwargs == {
        "bootstrap_servers": "k1:9093,k2:9093", "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism.upper(), "sasl_plain_username": "feedamp",
        "sasl_plain_password": "s3cret",
    }  # fmt: skip
    creds = faust_security(s)["broker_credentials"]
    assert isinstance(creds, SASLCredentials)
    # What Faust hands to aiokafka is the same as ours.
    assert credentials_to_aiokafka_auth(creds) == {
        k: v for k, v in kwargs.items() if k != "bootstrap_servers"
    } | {"ssl_context": None}
    assert "s3cret" not in repr(s), "the password stays out of logs"


def _self_signed(tmp_path) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=feedamp", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


def test_sasl_ssl_with_ca_and_client_certificate(tmp_path):
    cert, key = _self_signed(tmp_path)
    s = settings(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                 KAFKA_SASL_USERNAME="u", KAFKA_SASL_PASSWORD="p", KAFKA_SSL_CAFILE=cert,
                 KAFKA_SSL_CERTFILE=cert, KAFKA_SSL_KEYFILE=key)  # fmt: skip
    kwargs = kafka_client_kwargs(s)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any("feedamp" in str(c.get("subject")) for c in context.get_ca_certs())
    creds = faust_security(s)["broker_credentials"]
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert isinstance(auth["ssl_context"], ssl.SSLContext)


def test_ssl_only_uses_system_cas_without_a_ca_file():
    s = settings(KAFKA_SECURITY_PROTOCOL="SSL")
    kwargs = kafka_client_kwargs(s)
    assert kwargs["security_protocol"] == "SSL" and "sasl_mechanism" not in kwargs
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    creds = faust_security(s)["broker_credentials"]
    assert isinstance(creds, SSLCredentials)
    assert credentials_to_aiokafka_auth(creds)["security_protocol"] == "SSL"


def test_env_names_round_trip():
    s = settings(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="u",
                 KAFKA_SASL_PASSWORD="p", KAFKA_SSL_CAFILE="/ca.pem")  # fmt: skip
    env = s.to_env()
    assert env["KAFKA_SASL_PASSWORD"] == "p" and env["KAFKA_SSL_CAFILE"] == "/ca.pem"
    assert Settings.from_env(env) == s


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL must be one of"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u",
          "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM must be one of"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "KAFKA_SASL_USERNAME is required"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_KEYFILE": "/k.pem"},
         "KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE"),
    ],
)  # fmt: skip
def test_bad_security_settings_name_the_variable(env, message):
    with pytest.raises(ValueError, match=message):
        kafka_client_kwargs(settings(**env))
    with pytest.raises(ValueError, match=message):
        faust_security(settings(**env))


def test_the_transport_hands_out_its_aiokafka_producer_and_refuses_another():
    transport = transport_class(100)
    assert transport.Producer is Producer
    with pytest.raises(TypeError, match="not a feedamp transport's producer"):
        aiokafka_producer(object())  # type: ignore[arg-type]
