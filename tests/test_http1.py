"""The webhooks' HTTP/1.1 client (adapters.http1) against real servers: aiohttp's, and
raw sockets where a receiver must misbehave in a way no framework lets it."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from adapters.http1 import Http1
from adapters.webhook import WebhookTarget
from broker.core.errors import TargetUnavailable
from broker.core.settings import WebhookTarget as WebhookConfig
from broker.dispatch.target import TriggerRequest
from broker.embedded_redis import free_port

JSON = {"Content-Type": "application/json"}


class Echo:
    """An aiohttp server answering each request with its key, counting connections."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.peers: set[object] = set()
        self.targets: list[str] = []
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        self.targets.append(request.raw_path)
        await request.read()
        await asyncio.sleep(self.delay)
        key = request.headers.get("Idempotency-Key", "")
        if request.path == "/chunked":
            response = web.StreamResponse(headers={"X-Request-Id": key})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for part in ("one ", "two ", "three"):
                await response.write(part.encode())
            await response.write_eof()
            return response
        return web.Response(text=f"answer to {key}", headers={"X-Request-Id": key})


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    server = Echo()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, keepalive_timeout=0.3)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port).start()
    yield server
    await runner.cleanup()


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def raw_server(serve: Serve) -> tuple[asyncio.Server, str]:
    port = free_port()
    server = await asyncio.start_server(_closing(serve), "127.0.0.1", port)
    return server, f"http://127.0.0.1:{port}/in"


def _closing(serve: Serve) -> Serve:
    """`serve`, whose connection is closed however it ends (a client that hung up)."""

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return guarded


def answering(raw: bytes) -> Serve:
    """Reads one request, answers it with the bytes `raw`, and hangs up."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(raw)
        await writer.drain()

    return serve


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
    return head + await reader.readexactly(length)


async def test_requests_share_one_kept_alive_connection_and_get_their_own_answers(
    echo: Echo,
) -> None:
    http = Http1()
    for i in range(20):
        answer = await http.request(
            "POST", f"{echo.url}/in", b"{}", {"Idempotency-Key": f"k{i}"}, 5
        )
        assert (answer.status, answer.body) == (200, f"answer to k{i}".encode())
        assert answer.headers["x-request-id"] == f"k{i}"
    assert len(echo.peers) == 1
    await http.aclose()


async def test_a_connection_the_receiver_closed_while_idle_is_not_used(echo: Echo) -> None:
    http = Http1()
    assert (await http.request("POST", f"{echo.url}/in", b"", {}, 5)).status == 200
    await asyncio.sleep(0.8)  # past the server's keep-alive timeout: it hangs up
    assert (await http.request("POST", f"{echo.url}/in", b"", {}, 5)).status == 200
    assert len(echo.peers) == 2
    await http.aclose()


async def test_chunked_answers_and_answers_read_to_the_end_of_the_connection(
    echo: Echo,
) -> None:
    http = Http1()
    chunked = await http.request("GET", f"{echo.url}/chunked", b"", {"Idempotency-Key": "c"}, 5)
    assert chunked.body == b"one two three" and chunked.headers["x-request-id"] == "c"

    unframed = b"HTTP/1.0 202 Accepted\r\nContent-Type: text/plain\r\n\r\nuntil the end"
    server, url = await raw_server(answering(unframed))
    answer = await http.request("POST", url, b"{}", JSON, 5)
    assert (answer.status, answer.body) == (202, b"until the end")
    server.close()
    await http.aclose()


async def test_a_stale_connection_is_replaced_and_the_request_sent_once_more() -> None:
    """The receiver closes a kept-alive connection just as the next request goes out
    (the race every keep-alive client meets): no byte of an answer came, so the
    request goes again on a new connection; the Idempotency-Key covers the receiver."""
    seen: list[bytes] = []
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        seen.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        if first:  # reads the next request, then hangs up without a word
            seen.append(await read_request(reader))
        else:
            await reader.read()
        writer.close()

    server, url = await raw_server(serve)
    http = Http1()
    assert (await http.request("POST", url, b"1", {}, 5)).body == b"ok"
    assert (await http.request("POST", url, b"2", {}, 5)).body == b"ok"
    assert connections == 2 and [r[-1:] for r in seen] == [b"1", b"2", b"2"]
    server.close()
    await http.aclose()


async def test_a_receiver_hanging_up_mid_answer_is_transient() -> None:
    cut_short = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"
    server, url = await raw_server(answering(cut_short))
    config = WebhookConfig(kind="webhook", url=url, timeout=5)
    request = TriggerRequest(trigger_id="t", contract="c", partition="", generation=0, spec={})
    with pytest.raises(TargetUnavailable, match="hung up mid-answer"):
        await WebhookTarget("hook", config, Http1()).trigger(request)
    server.close()


async def test_only_the_first_max_body_bytes_of_a_long_answer_are_read() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        size = 50 * 1024 * 1024
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
        for _ in range(size // 65536):
            writer.write(b"x" * 65536)
            await writer.drain()
        writer.close()

    server, url = await raw_server(serve)
    http = Http1(max_body=4096)
    answer = await http.request("POST", url, b"", {}, 30)
    assert answer.status == 200 and answer.body == b"x" * 4096
    server.close()
    await http.aclose()


async def test_a_timed_out_requests_late_answer_is_never_read_as_another(echo: Echo) -> None:
    http = Http1()
    echo.delay = 1.0
    with pytest.raises(TimeoutError):
        await http.request("POST", f"{echo.url}/in", b"", {"Idempotency-Key": "slow"}, 0.3)
    echo.delay = 0.0
    answer = await http.request("POST", f"{echo.url}/in", b"", {"Idempotency-Key": "next"}, 5)
    assert answer.body == b"answer to next"
    await http.aclose()


@pytest.mark.parametrize(
    "headers",
    [{"X-Evil": "a\r\nInjected: 1"}, {"X-Evil": "a\nb"}, {"Bad Name": "x"}, {"X": "nul\x00"}],
)
async def test_a_header_that_would_split_the_request_is_refused_before_sending(
    echo: Echo, headers: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="header"):
        await Http1().request("POST", f"{echo.url}/in", b"", headers, 5)
    assert echo.targets == []


async def test_the_target_is_escaped_as_yarl_sends_it_and_framing_is_baton_s(
    echo: Echo,
) -> None:
    http = Http1()
    url = f"{echo.url}/a path/caf\u00e9/already%20escaped?q=a b&x=1"
    headers = {"content-length": "999", "Transfer-Encoding": "chunked"}
    answer = await http.request("POST", url, b"{}", headers, 5)
    assert answer.status == 200  # the body was framed by its real length
    assert echo.targets == ["/a%20path/caf%C3%A9/already%20escaped?q=a%20b&x=1"]
    with pytest.raises(ValueError, match="not an http"):
        await http.request("POST", "ftp://example.com/x", b"", {}, 5)
    await http.aclose()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_is_verified_against_the_trusted_certificates(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)

    secure = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")
    port = free_port()
    server = await asyncio.start_server(_closing(secure), "127.0.0.1", port, ssl=served)
    url = f"https://localhost:{port}/in"
    with pytest.raises(ssl.SSLCertVerificationError):  # self-signed: not trusted by default
        await Http1().request("POST", url, b"", {}, 5)
    trusting = Http1(tls=ssl.create_default_context(cafile=str(cert)))
    assert (await trusting.request("POST", url, b"", {}, 5)).body == b"secure"
    await trusting.aclose()
    server.close()
