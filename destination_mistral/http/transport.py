"""The connection to the Mistral API: one aiohttp session for the whole sync, which reuses its
connections (at hundreds of requests per second on 2 cores the client's CPU cost per request
matters), or a test's sender in its place. Either way an answer is refused past
limits.max_response_mb."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from destination_mistral.http.answers import check_size, read_body
from destination_mistral.settings import Limits
from mistral_connection import MistralConnection, mask_secret_in

# (status, headers, body); status None for a connection failure or a timeout.
Sender = Callable[[str, str, bytes | None], Awaitable[tuple[int, Mapping[str, str], bytes]]]


class Transport:
    def __init__(self, connection: MistralConnection, limits: Limits, sender: Sender | None = None) -> None:
        self.connection = connection
        self.limits = limits
        self._sender = sender
        self._session = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ensure_session(self):
        import aiohttp

        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.limits.max_concurrent_requests, ttl_dns_cache=300, keepalive_timeout=60
            )
            headers = {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "destination-mistral/0.1",
            }
            headers.update(self.connection.auth_headers())
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.limits.timeout_seconds),
                raise_for_status=False,
            )
        return self._session

    async def send(
        self, method: str, url: str, body: bytes | None, content_type: str | None = None
    ) -> tuple[int, Mapping[str, str], bytes]:
        status, headers, raw = await self._send(method, url, body, content_type)
        if status is not None and not 200 <= status < 300:
            # An error answer is quoted into messages and error rows, and some servers and proxies
            # echo the request in it (its Authorization header, its URL with a query-parameter key),
            # whole or cut anywhere: the key is masked before anything reads or shortens the body.
            raw = mask_secret_in(raw, self.connection.api_key)
        return status, headers, raw

    async def _send(
        self, method: str, url: str, body: bytes | None, content_type: str | None
    ) -> tuple[int, Mapping[str, str], bytes]:
        cap = self.limits.max_response_bytes
        if self._sender is not None:
            status, headers, raw = await self._sender(method, url, body)
            check_size(raw, cap)
            return status, headers, raw
        session = self._ensure_session()
        headers = {"Content-Type": content_type} if content_type else None
        # Redirects are not followed: the key goes to the configured host only (a redirect would carry
        # a query-parameter key, and the request itself, to whatever host the answer names).
        async with session.request(
            method, url, data=body, params=self.connection.auth_params() or None, headers=headers, allow_redirects=False
        ) as response:
            return response.status, response.headers, await read_body(response, cap)
