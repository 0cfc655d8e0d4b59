"""TLS for data and control: server credentials for a node, channel credentials for
whoever calls it (clients, and nodes forwarding to their neighbours).

One set of PEM files per party: ``cert`` + ``key`` identify it, ``ca`` is what it
trusts. A node given a ``ca`` requires callers to present a certificate signed by
it (mutual TLS), so between nodes that share a CA every hop is authenticated both
ways. Certificates must name the host a caller dials (the topology's address host:
an IP SAN such as 127.0.0.1, or a DNS SAN).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from idn.config import ConfigError


@dataclass(frozen=True)
class TLSFiles:
    cert: bytes | None = None
    key: bytes | None = None
    ca: bytes | None = None

    @staticmethod
    def load(cert: Path | None = None, key: Path | None = None, ca: Path | None = None) -> TLSFiles | None:
        """PEM files -> TLSFiles (None when no file is given); errors name the option and the fix."""
        if cert is None and key is None and ca is None:
            return None
        if (cert is None) != (key is None):
            raise ConfigError(None, "--tls-cert/--tls-key", "a certificate needs its private key and vice versa",
                              "give both --tls-cert and --tls-key")

        def read(p: Path | None, opt: str) -> bytes | None:
            if p is None:
                return None
            try:
                data = p.read_bytes()
            except OSError as e:
                raise ConfigError(p, opt, f"cannot read: {e.strerror}", "give the path of a PEM file") from None
            if b"-----BEGIN" not in data:
                raise ConfigError(p, opt, "not a PEM file", "give a PEM-encoded certificate or key")
            return data

        return TLSFiles(read(cert, "--tls-cert"), read(key, "--tls-key"), read(ca, "--tls-ca"))

    def server_credentials(self) -> grpc.ServerCredentials:
        if self.cert is None or self.key is None:
            raise ConfigError(None, "--tls-cert/--tls-key", "a TLS server needs a certificate and its key",
                              "give --tls-cert and --tls-key (and --tls-ca to require client certificates)")
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca,
                                           require_client_auth=self.ca is not None)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)


def sync_channel(address: str, tls: TLSFiles | None, options: list) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, tls.channel_credentials(), options=options)


def aio_channel(address: str, tls: TLSFiles | None, options: list) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, tls.channel_credentials(), options=options)
