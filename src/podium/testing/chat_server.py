"""A scripted OpenAI-compatible chat server on loopback, for testing LLM agents for real.

It speaks the real HTTP protocol of `POST /v1/chat/completions` (plain JSON, or server-sent
events with `"stream": true`), so the code under test uses the real `openai` client. Replies
come from a script: a queue of `Reply`s, and/or a function of the request that may answer
(say, by the agent's system prompt) or return None to take the next queued reply. Every
request is kept in `requests`, so a test can assert what the model was shown.

    with ChatServer(Reply.calls(ToolCall(name="add", arguments={"a": 1})), "1") as server:
        spec = ModelSpec(model="m", base_url=server.url, api_key_env="MY_KEY")
        ...
        assert server.requests[1].messages[-1]["role"] == "tool"

A request the script has no reply for gets HTTP 500 with a message saying so.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["ChatRequest", "ChatServer", "Reply", "ToolCall"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """A tool call the scripted model makes. `arguments` is JSON-encoded, unless it is a
    str, which is sent as is (so a test can send arguments that do not parse)."""

    name: str
    arguments: Any = field(default_factory=dict)
    id: str | None = None  # None: `call_<n>`, numbered by the server


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """One scripted answer: a completion (text and/or tool calls), or an HTTP error.

    `body` replaces the whole response body (a malformed one, say); `delay` is seconds to
    wait before answering; the token counts are reported as the completion's `usage`.
    """

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    delay: float = 0.0
    prompt_tokens: int = 10
    completion_tokens: int = 5

    @classmethod
    def text(cls, content: str, **options: Any) -> Reply:
        return cls(content=content, **options)

    @classmethod
    def json(cls, value: Any, **options: Any) -> Reply:
        """A text reply holding `value` as JSON (a structured answer)."""
        return cls(content=json.dumps(value), **options)

    @classmethod
    def calls(cls, *calls: ToolCall, content: str | None = None, **options: Any) -> Reply:
        return cls(content=content, tool_calls=calls, **options)

    @classmethod
    def error(
        cls,
        status: int,
        message: str = "scripted failure",
        *,
        retry_after: float | None = None,
        **options: Any,
    ) -> Reply:
        """An HTTP error with an OpenAI-style error body (and `Retry-After`, if given)."""
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        body = json.dumps({"error": {"message": message, "type": "scripted", "code": None}})
        return cls(status=status, headers=headers, body=body, **options)

    @classmethod
    def malformed(cls, body: str = '{"id": "chatcmpl-1", "choices": [', **options: Any) -> Reply:
        """A 200 answer whose body is not JSON, sent as `application/json`."""
        return cls(body=body, **options)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRequest:
    """A request the server received: its path, headers (names in lower case) and JSON body."""

    path: str
    headers: Mapping[str, str]
    body: Mapping[str, Any]

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages")
        return list(messages) if isinstance(messages, list) else []

    @property
    def system(self) -> str:
        """The content of the first system message ("" if there is none)."""
        for message in self.messages:
            if message.get("role") == "system":
                return str(message.get("content") or "")
        return ""

    @property
    def tools(self) -> list[str]:
        """The names of the tools offered to the model."""
        tools = self.body.get("tools")
        if not isinstance(tools, list):
            return []
        return [str(tool.get("function", {}).get("name")) for tool in tools]

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


Script = Callable[[ChatRequest], Reply | str | None]


class ChatServer:
    """An OpenAI-compatible chat-completions server on 127.0.0.1, answering from a script.

    `replies` are answered in order (a str is a text reply); `respond`, if given, is asked
    first for each request and may return None to fall back to the queue. Use it as a
    context manager (sync; it runs in a thread of its own, so async tests may use it too).
    """

    def __init__(self, *replies: Reply | str, respond: Script | None = None) -> None:
        self._queue: deque[Reply] = deque()
        self._respond = respond
        self._lock = threading.Lock()
        self._requests: list[ChatRequest] = []
        self._completions = 0
        self._http: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add(*replies)

    def add(self, *replies: Reply | str) -> None:
        """Queue more replies, after those already queued."""
        with self._lock:
            self._queue.extend(Reply.text(r) if isinstance(r, str) else r for r in replies)

    @property
    def requests(self) -> list[ChatRequest]:
        """Every request received so far, in order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        """How many queued replies have not been used."""
        with self._lock:
            return len(self._queue)

    @property
    def url(self) -> str:
        """The base URL to give a client: `http://127.0.0.1:<port>/v1`."""
        if self._http is None:
            raise RuntimeError("the chat server is not running; use it in a `with` block")
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def start(self) -> ChatServer:
        if self._http is not None:
            return self
        self._http = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._http.chat = self
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.02},  # how long stop() waits for the loop to notice
            name="podium-chat-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is None:
            return
        self._http.shutdown()
        self._http.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._http = self._thread = None

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _answer(self, request: ChatRequest) -> tuple[Reply | None, int]:
        """The reply to `request` (None if the script has none) and its completion number."""
        with self._lock:
            self._requests.append(request)
            self._completions += 1
            number = self._completions
        reply = self._respond(request) if self._respond is not None else None
        if reply is None:
            with self._lock:
                reply = self._queue.popleft() if self._queue else None
        return (Reply.text(reply) if isinstance(reply, str) else reply), number


class _HTTPServer(ThreadingHTTPServer):
    block_on_close = False  # a client's idle keep-alive connection must not hold up stop()
    chat: ChatServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client gave up (a timeout, a cancelled step): nothing to report
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection is dropped after this long
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read `requests`; the console stays quiet

    def do_GET(self) -> None:
        self._send(404, _error_body("no such route"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, _error_body(f"no such route: {self.path}"))
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, _error_body("the request body is not JSON"))
            return
        if not isinstance(body, dict):
            self._send(400, _error_body("the request body is not a JSON object"))
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = ChatRequest(path=self.path, headers=headers, body=body)
        reply, number = self.server.chat._answer(request)
        if reply is None:
            self._send(500, _error_body("the scripted chat server has no reply for this request"))
            return
        if reply.delay:
            time.sleep(reply.delay)
        if reply.body is not None or reply.status != 200:
            self._send(reply.status, reply.body or "", reply.headers)
        elif request.stream:
            self._stream(reply, request, number)
        else:
            self._send(200, json.dumps(_completion(reply, request, number)), reply.headers)

    def _send(self, status: int, body: str, headers: Mapping[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, reply: Reply, request: ChatRequest, number: int) -> None:
        self.close_connection = True  # the stream ends when the connection does
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        options = request.body.get("stream_options")
        with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        for chunk in _chunks(reply, request, number, with_usage=with_usage):
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def _error_body(message: str) -> str:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error"}})


def _calls(reply: Reply) -> list[dict[str, Any]]:
    return [
        {
            "id": call.id or f"call_{i + 1}",
            "type": "function",
            "function": {
                "name": call.name,
                "arguments": call.arguments
                if isinstance(call.arguments, str)
                else json.dumps(call.arguments),
            },
        }
        for i, call in enumerate(reply.tool_calls)
    ]


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _finish(reply: Reply) -> str:
    return "tool_calls" if reply.tool_calls else "stop"


def _completion(reply: Reply, request: ChatRequest, number: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = _calls(reply)
    return {
        "id": f"chatcmpl-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(reply)}],
        "usage": _usage(reply),
    }


def _pieces(text: str, size: int = 8) -> Sequence[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _chunks(
    reply: Reply, request: ChatRequest, number: int, *, with_usage: bool
) -> Iterator[dict[str, Any]]:
    """The completion as stream chunks: role, content pieces, tool call pieces, finish."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{number}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": request.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    yield chunk({"role": "assistant", "content": ""})
    if reply.content:
        for piece in _pieces(reply.content):
            yield chunk({"content": piece})
    for index, call in enumerate(_calls(reply)):
        function = call["function"]
        head = {"name": function["name"], "arguments": ""}
        opening = {"index": index, "id": call["id"], "type": "function", "function": head}
        yield chunk({"tool_calls": [opening]})
        for piece in _pieces(function["arguments"]):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, _finish(reply))
    if with_usage:
        last = chunk({})
        last["choices"] = []
        last["usage"] = _usage(reply)
        yield last
