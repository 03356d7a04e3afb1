"""Fixtures for the LLM client tests: a scripted OpenAI-compatible stand-in server (stdlib
http.server on 127.0.0.1, a real HTTP endpoint with bounded requests) and the real llama.cpp
server with SmolLM2, started once per session."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from local_server import real_local_server


def pytest_configure(config):
    config.addinivalue_line("markers", "llm_server: tests that start the real local llama.cpp server")


def completion(content: str) -> dict:
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "stub",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


class StubServer:
    """Answers POST /v1/chat/completions from a script of (status, delay_s) steps.

    After the script is used up every request succeeds. A success echoes the last user message,
    so tests can check that results come back in input order. Counts requests and the maximum
    number in flight at once.
    """

    def __init__(self, script=(), delay_s: float = 0.0, max_requests: int = 200):
        self.script = list(script)
        self.delay_s = delay_s
        self.max_requests = max_requests
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with stub.lock:
                    stub.requests.append(body)
                    stub.headers.append(dict(self.headers))
                    step = stub.script.pop(0) if stub.script else (200, stub.delay_s)
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                    over = len(stub.requests) > stub.max_requests
                try:
                    status, delay = step
                    time.sleep(delay)
                    if over:
                        status = 400  # bounded: a runaway client gets a non-retryable error
                    if status == 200:
                        self._send(200, completion(body["messages"][-1]["content"]))
                    else:
                        extra = {"Retry-After": "0"} if status == 429 else {}
                        self._send(status, {"error": {"message": f"scripted {status}",
                                                      "type": "test", "code": status}}, extra)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)
                finally:
                    with stub.lock:
                        stub.in_flight -= 1

            def _send(self, status, obj, extra=None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stub_server():
    """Factory: `with stub_server(script=[(429, 0), ...]) as srv:`."""
    return StubServer


@pytest.fixture(scope="session")
def local_llm(tmp_path_factory):
    """(LLMConfig with the live base_url) for the real llama.cpp + SmolLM2 server, once per session."""
    with real_local_server(tmp_path_factory.mktemp("llm"), max_tokens=48) as live:
        yield live
