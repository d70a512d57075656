"""TLS for the gRPC server, and how the embedded gateway reaches it when TLS is on.

With `--tls-cert`/`--tls-key` the public gRPC port speaks TLS only. The gateway inside
`taskhub serve` then calls its own server on a second, loopback-only port with gRPC's
local credentials rather than TLS: the name it would dial (`--grpc-listen`, maybe
0.0.0.0) need not be in the certificate, and the CA that signed it need not be on this
machine. That port takes connections from this host only, where a caller can reach the
TLS port just as well; API keys are checked on both.
"""

from __future__ import annotations

import pathlib
import ssl

import grpc

from taskhub.server.config import Config

LOOPBACK = "127.0.0.1:0"


def _read(path: str, flag: str) -> bytes:
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as error:
        raise OSError(f"cannot read {flag} {path}: {error.strerror or error}") from None


def server_credentials(config: Config) -> grpc.ServerCredentials | None:
    """TLS credentials from the certificate chain and key files; None when TLS is off."""
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ValueError("TLS needs both --tls-cert and --tls-key (TASKHUB_TLS_CERT, TASKHUB_TLS_KEY)")
    if config.tls_cert is None or config.tls_key is None:  # both or neither, by now
        return None
    key, chain = _read(config.tls_key, "--tls-key"), _read(config.tls_cert, "--tls-cert")
    # gRPC takes any bytes here and fails only when binding, as if the port were taken: check the pair first.
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(config.tls_cert, config.tls_key)
    except ssl.SSLError as error:
        raise ValueError(
            f"--tls-cert {config.tls_cert} and --tls-key {config.tls_key} are not a PEM certificate"
            f" chain and its private key: {error.reason or error}"
        ) from None
    return grpc.ssl_server_credentials([(key, chain)])


def local_server_credentials() -> grpc.ServerCredentials:
    """For the embedded gateway's loopback port: refuses peers not on this host."""
    return grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)


def local_channel_credentials() -> grpc.ChannelCredentials:
    return grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
