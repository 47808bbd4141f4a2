"""A loopback OpenAI-compatible chat-completions server for the LLM judge, speaking the documented wire.

`POST /v1/chat/completions` with a bearer key; answers `choices[0].message.content` and `usage` with
`prompt_tokens`, `completion_tokens` and `total_tokens`. The verdict is "Yes." when the passage contains
one of `yes_words`, else "No.", so tests know every expected verdict. Faults are scripted as in
`tests.rerank.servers` (one per request, before normal answers).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.rerank.servers import API_KEY, Fault, tokens_of

CHAT_MODEL = "judge-model"
FIELDS = {"model", "messages", "temperature", "max_tokens"}


class FakeChat:
    """A running fake chat endpoint; `url` is the base URL (ending in /v1), `requests` the bodies seen."""

    def __init__(self, yes_words: Iterable[str] = ("for",), *, usage: bool = True) -> None:
        self.yes_words = tuple(yes_words)
        self.usage = usage
        self.requests: list[Any] = []
        self.faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def script(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _respond(self, path: str, auth: str | None, raw: bytes) -> Fault:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            self.requests.append(body)
            if self.faults:
                return self.faults.popleft()
        if path != "/v1/chat/completions":
            return Fault(404, {"error": {"message": f"no route {path}"}})
        if auth != f"Bearer {API_KEY}":
            return Fault(401, {"error": {"message": "invalid api key"}})
        if not isinstance(body, dict) or set(body) != FIELDS or body["model"] != CHAT_MODEL:
            return Fault(400, {"error": {"message": f"unexpected request {body!r:.200}"}})
        messages = body["messages"]
        passage = messages[-1]["content"].split("Passage:\n", 1)[1]
        content = "Yes." if any(w in passage for w in self.yes_words) else "No."
        prompt = sum(tokens_of(m["content"]) for m in messages)
        answer: dict[str, Any] = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": CHAT_MODEL,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
        }
        if self.usage:
            answer["usage"] = {"prompt_tokens": prompt, "completion_tokens": 2, "total_tokens": prompt + 2}
        return Fault(200, answer)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                fault = fake._respond(self.path, self.headers.get("authorization"), raw)
                time.sleep(fault.delay_s)
                data = fault.body if isinstance(fault.body, bytes) else json.dumps(fault.body).encode()
                try:
                    self.send_response(fault.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for name, value in fault.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        return Handler
