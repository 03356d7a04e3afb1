"""A scripted OpenAI-compatible endpoint for the bad-reply tests of every LLM role: a stdlib HTTP
server on 127.0.0.1, driven through the real openai client, answering what a real server cannot be
made to answer on demand (truncated, empty, off-format replies, HTTP errors). Behaviour on a real
model is tested against the project's llama.cpp server (tests marked llm_server)."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tasks.llm.client import LLMClient, LLMConfig


@contextlib.contextmanager
def scripted(reply_for, tmp_path):
    """An LLMClient whose endpoint answers `reply_for(messages) -> (status, content)`."""
    requests: list[list[dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body["messages"])
            status, content = reply_for(body["messages"])
            data = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                               "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                   "role": "assistant", "content": content}}]}
                              if status == 200 else {"error": {"message": "scripted"}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        cfg = LLMConfig(model="m", cache_dir=str(tmp_path / "cache"), max_retries=0)
        with LLMClient(cfg, base_url=f"http://127.0.0.1:{httpd.server_address[1]}/v1") as client:
            yield client, requests
    finally:
        httpd.shutdown()
        httpd.server_close()
