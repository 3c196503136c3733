"""Kafka connection security (SASL and TLS) from settings, for aiokafka and for Faust.

Every Kafka client of the engine is built from these two functions, so one set of
``KAFKA_*`` variables configures the worker, ``produce``, ``replay``, ``dlq``, ``status``
and topic creation alike:

- ``KAFKA_SECURITY_PROTOCOL``: ``PLAINTEXT`` (default), ``SSL``, ``SASL_PLAINTEXT`` or
  ``SASL_SSL``;
- ``KAFKA_SASL_MECHANISM``: ``PLAIN`` (default), ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``,
  with ``KAFKA_SASL_USERNAME`` and ``KAFKA_SASL_PASSWORD``;
- ``KAFKA_SSL_CAFILE`` (default: the system's CAs), ``KAFKA_SSL_CERTFILE`` and
  ``KAFKA_SSL_KEYFILE`` (client certificate, for mutual TLS).
"""

from __future__ import annotations

import ssl
from typing import Any

from feedamp.config import Settings

__all__ = ["MECHANISMS", "PROTOCOLS", "faust_security", "kafka_client_kwargs", "ssl_context"]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _checked(settings: Settings) -> tuple[str, str]:
    """The protocol and mechanism, upper-cased; ValueError naming the variable if wrong."""
    protocol = settings.kafka_security_protocol.strip().upper()
    mechanism = settings.kafka_sasl_mechanism.strip().upper()
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, "
            f"got {settings.kafka_security_protocol!r}"
        )
    if protocol.startswith("SASL_"):
        if mechanism not in MECHANISMS:
            raise ValueError(
                f"KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}, "
                f"got {settings.kafka_sasl_mechanism!r}"
            )
        if not settings.kafka_sasl_username:
            raise ValueError(f"KAFKA_SASL_USERNAME is required with {protocol}")
    if settings.kafka_ssl_keyfile and not settings.kafka_ssl_certfile:
        raise ValueError("KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE")
    return protocol, mechanism


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for ``SSL`` and ``SASL_SSL`` (None for plaintext protocols).

    Verifies the broker against ``KAFKA_SSL_CAFILE`` (or the system's CAs) with host name
    checking, and presents the client certificate when one is configured.
    """
    protocol, _ = _checked(settings)
    if protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=settings.kafka_ssl_cafile or None
    )
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None)
    return context


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (consumer, producer, admin client):
    the bootstrap servers and the security options."""
    protocol, mechanism = _checked(settings)
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if protocol.startswith("SASL_"):
        kwargs["sasl_mechanism"] = mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password
    return kwargs


def faust_security(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``faust.App``: ``broker_credentials`` (empty for plaintext).

    Faust derives the protocol from the credentials: :class:`faust.SSLCredentials` means
    ``SSL``; :class:`faust.SASLCredentials` means ``SASL_SSL`` with a TLS context and
    ``SASL_PLAINTEXT`` without.
    """
    from faust.auth import SASLCredentials, SSLCredentials

    protocol, mechanism = _checked(settings)
    context = ssl_context(settings)
    if protocol == "PLAINTEXT":
        return {}
    if protocol == "SSL":
        return {"broker_credentials": SSLCredentials(context)}
    return {
        "broker_credentials": SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            ssl_context=context,
            mechanism=mechanism,
        )
    }
