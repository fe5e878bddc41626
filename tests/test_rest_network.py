"""REST network URLs (``rest+https://``, ``rest+http://``) are refused wherever a network is set, saying why.

Why, kept under test here so that a new SDK that fixes it shows up: allora-sdk 1.3.0's REST clients never
open their ``requests-async`` session, and even opened they send Simulate and BroadcastTx as GET, which a
Cosmos REST gateway (grpc-gateway) serves only as POST — GET /cosmos/tx/v1beta1/txs is GetTxsEvent.
"""

from __future__ import annotations

import asyncio
import http.server
import threading

import pytest

from tests.fixtures.runtime import EXIT_CONFIG, bootstrap_env, make_bundle, run_bootstrap

REST_URL = "rest+https://user:hunter22@rest.example.com"
REASON = "allora-sdk 1.3.0 cannot run a worker over REST"


@pytest.fixture
def recording_gateway():
    """A loopback HTTP server answering 200 {} to anything, recording (method, path) of each request."""
    seen: list[tuple[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            seen.append((self.command, self.path.split("?", 1)[0]))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_the_sdks_rest_clients_cannot_submit_which_is_why_rest_is_refused(recording_gateway):
    from allora_sdk.rpc_client.protos.cosmos.tx.v1beta1 import BroadcastMode, BroadcastTxRequest, SimulateRequest
    from allora_sdk.rpc_client.rest import CosmosTxV1Beta1RestServiceClient

    url, seen = recording_gateway

    async def main():
        client = CosmosTxV1Beta1RestServiceClient(url)
        with pytest.raises(RuntimeError, match="Session not initialized"):
            await client.simulate(SimulateRequest(tx_bytes=b"\x0a\x00"))
        async with client.session:  # opened the way requests-async wants it: the method is still wrong
            await client.simulate(SimulateRequest(tx_bytes=b"\x0a\x00"))
            await client.broadcast_tx(BroadcastTxRequest(tx_bytes=b"\x0a\x00", mode=BroadcastMode.SYNC))

    asyncio.run(main())
    assert seen == [("GET", "/cosmos/tx/v1beta1/simulate"), ("GET", "/cosmos/tx/v1beta1/txs")]


def test_the_runtime_refuses_a_rest_network_as_configuration_without_echoing_the_url(tmp_path):
    bundle = make_bundle(tmp_path / "b", "def run(nonce):\n    return 1.0\n")
    env = bootstrap_env(ALLORA_NETWORK=REST_URL, ALLORA_CHAIN_ID="allora-testnet-1", ALLORA_WEBSOCKET_URL="wss://rpc.example.com/websocket")
    result = run_bootstrap(bundle, "--print-config", env=env)
    assert result.code == EXIT_CONFIG
    message = result.one("config_error")["message"]
    assert message.startswith(f"ALLORA_NETWORK: a REST network URL cannot be used: {REASON}") and "grpc+https://" in message
    assert "hunter22" not in result.out + result.err


def test_validate_render_and_publish_refuse_a_rest_network_saying_why(cli, tmp_path):
    bundle = make_bundle(tmp_path / "b", "def run(nonce):\n    return 1.0\n")
    manifest = bundle / "model.yaml"
    manifest.write_text(manifest.read_text().replace('network: "testnet"', f'network: "{REST_URL}"'))
    validated = cli("bundle", "validate", bundle)
    assert validated.code == 1
    [line] = [line for line in (validated.out + validated.err).splitlines() if "allora.network" in line]
    assert line.startswith(f"{manifest}:") and f"allora.network: a REST network URL cannot be used: {REASON}" in line
    manifest.write_text(manifest.read_text().replace(f'network: "{REST_URL}"', 'network: "testnet"'))

    rendered = cli("gitops", "render", bundle, "--network", REST_URL, "--output", tmp_path / "out")
    assert rendered.code == 2 and rendered.err.startswith(f"error: network: a REST network URL cannot be used: {REASON}")
    assert len(rendered.lines) == 1 and not (tmp_path / "out").exists()
    published = cli("gitops", "publish", bundle, "--network", "rest+http://127.0.0.1:1317", "--repo", tmp_path / "none.git")
    assert published.code == 2 and len(published.lines) == 1
    assert published.err.startswith(f"error: a REST network URL cannot be used: {REASON}")
    for result in (validated, rendered, published):
        assert "hunter22" not in result.out + result.err


def test_a_bad_network_is_reported_once_and_never_echoed_into_the_names_derived_from_it(cli, tmp_path):
    """Render used to derive the wallet Secret's name from whatever --network said, credentials included."""
    bundle = make_bundle(tmp_path / "b", "def run(nonce):\n    return 1.0\n")
    rendered = cli("gitops", "render", bundle, "--network", "grpc+https://user:hunter22@grpc.example.com", "--output", tmp_path / "out")
    assert rendered.code == 2
    assert rendered.lines == ["error: network: Input should be 'testnet' or 'mainnet' (got 'grpc+https://user:***@grpc.example.com')"]
