"""``jupyterhub-sidecars kubepie gateway``: settings, provider, key store, backend, serve."""

from __future__ import annotations

import argparse

import aiohttp
import httpx
from prometheus_client import CollectorRegistry

from services.kubepie.gateway.accesskeys import AccessKeys, KeyStore, SqliteKeyStore
from services.kubepie.gateway.app import Gateway, build_app
from services.kubepie.gateway.authn import Authenticator
from services.kubepie.gateway.bearer import JwtVerifier, OpaqueTokenChecker, ProviderMetadata
from services.kubepie.gateway.keys_page import KeysPage
from services.kubepie.gateway.links import LinkStore, ShareLinks, SqliteLinkStore
from services.kubepie.gateway.login import BrowserLogin
from services.kubepie.gateway.servers import Backend, UserServers
from services.kubepie.gateway.sessions import Sessions
from services.kubepie.gateway.settings import GatewaySettings
from services.runtime.logs import configure_logging
from services.runtime.settings import run_service_main
from services.runtime.webapp import run_service


def main(args: argparse.Namespace) -> int:
    return run_service_main("kubepie gateway", GatewaySettings, args, _run)


async def _backend(settings: GatewaySettings) -> tuple[Backend, KeyStore, LinkStore]:
    if settings.backend == "kubernetes":
        from services.kubepie.gateway.backends.kubernetes import connect
        return await connect(settings)
    from services.kubepie.gateway.backends.local import LocalBackend
    return (LocalBackend(settings.storage, log_level=settings.log_level,
                         processes=settings.fileserver_processes),
            SqliteKeyStore(settings.key_store), SqliteLinkStore(settings.key_store))


async def _run(settings: GatewaySettings) -> int:
    configure_logging("kubepie-gateway", settings.log_level)
    assert settings.client_secret is not None and settings.session_secret is not None
    http = httpx.AsyncClient(timeout=10)
    metadata = ProviderMetadata(settings.oidc_issuer, http)
    jwts = JwtVerifier(metadata, http, audiences=settings.audience_list,
                       algorithms=settings.algorithm_list, leeway=int(settings.leeway),
                       access_token_check=settings.access_token_check)
    client_secret = settings.client_secret.get_secret_value()
    opaque = OpaqueTokenChecker(settings.opaque_tokens, metadata, http,
                                client_id=settings.client_id, client_secret=client_secret,
                                audiences=settings.audience_list,
                                cache_seconds=settings.token_cache)
    sessions = Sessions(settings.session_secret.get_secret_value(),
                        secure=settings.secure_cookies, lifetime=settings.session_lifetime)
    backend, store, link_store = await _backend(settings)
    keys = AccessKeys(store, max_lifetime=settings.key_max_lifetime or None)
    servers = UserServers(backend, idle_timeout=settings.idle_timeout,
                          start_timeout=settings.start_timeout,
                          max_starting=settings.max_starting)
    gateway = Gateway(
        authenticator=Authenticator(jwts=jwts, opaque=opaque, mapping=settings.claim_mapping,
                                    keys=keys, sessions=sessions),
        servers=servers,
        login=BrowserLogin(metadata=metadata, verifier=jwts, http=http, sessions=sessions,
                           mapping=settings.claim_mapping, client_id=settings.client_id,
                           client_secret=client_secret, public_url=settings.public_url,
                           scopes=settings.scopes),
        keys_page=KeysPage(keys, sessions, settings.public_url),
        links=ShareLinks(link_store, max_lifetime=settings.link_max_lifetime),
        sessions=sessions,
        public_url=settings.public_url, trust_forwarded=settings.trust_forwarded,
        authorize_reuse=settings.authorize_reuse)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=600)
    session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False,
                                    connector=aiohttp.TCPConnector(limit=0),
                                    skip_auto_headers=("User-Agent", "Content-Type"))
    app = build_app(gateway, CollectorRegistry(), session)
    try:
        return await run_service(app, lambda: _reap(servers), host=settings.host,
                                 port=settings.port)
    finally:
        await servers.close()
        store.close()
        link_store.close()
        await session.close()
        await http.aclose()


async def _reap(servers: UserServers) -> int:
    await servers.reap_forever()
    return 0
