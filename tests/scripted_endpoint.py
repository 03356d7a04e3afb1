"""A scripted OpenAI-compatible endpoint for the bad-reply tests of every LLM role: a stdlib HTTP
server on 127.0.0.1, driven through the real openai client, answering what a real server cannot be
made to answer on demand (truncated, empty, off-format replies, HTTP errors, slow replies).
Behaviour on a real model is tested against the project's llama.cpp server (tests marked llm_server)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tasks.llm.client import LLMClient, LLMConfig


class ScriptedEndpoint:
    """`with ScriptedEndpoint(reply) as ep:` serves chat completions at `ep.url`, answering
    `reply(messages) -> (status, content)` or `(status, content, delay_s)`; every request body is
    kept in `ep.requests`."""

    def __init__(self, reply):
        self.requests: list[dict] = []
        ep = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ep.requests.append(body)
                status, content, *delay = reply(body["messages"])
                time.sleep(delay[0] if delay else 0)
                data = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                   "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                       "role": "assistant", "content": content}}]}
                                  if status == 200 else {"error": {"message": "scripted"}}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def scripted(reply_for, tmp_path):
    """An LLMClient whose endpoint answers `reply_for(messages) -> (status, content)`, and the list
    of request bodies it receives."""
    with ScriptedEndpoint(reply_for) as ep:
        cfg = LLMConfig(model="m", cache_dir=str(tmp_path / "cache"), max_retries=0)
        with LLMClient(cfg, base_url=ep.url) as client:
            yield client, ep.requests
