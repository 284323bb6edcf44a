"""A strict OpenAI-compatible server on 127.0.0.1 for offline tests of the openai backends.

It speaks the parts of the API the builder uses (chat completions with strict json_schema and
image content, files, batches) and is stricter than needed: a wrong ``Authorization`` header,
a ``response_format`` that is not the strict schema the official client derives from our
Contract v1 model, or image parts that are not decodable JPEGs of the expected count and
detail are rejected. Answers are built from what it decodes (frame count, mean colour), so
they are schema-valid and request-specific. Faults can be injected (429 with retry-after, 500,
hangs past the client timeout, malformed JSON, schema-invalid answers). Every request is
logged. It stops itself after ``lifetime`` seconds even if a test forgets to.
"""

from __future__ import annotations

import base64
import email.parser
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import cv2
import numpy as np
from openai.lib._parsing._completions import type_to_response_format_param

from mv4all.schema import (
    MV_TYPES,
    FrameCaption,
    FrameCaptions,
    LyricsUnderstanding,
    MusicCaption,
    MVDescription,
    MVTypeTag,
    UnifiedMusicCaption,
)

MODELS = {m.__name__: m for m in (FrameCaptions, FrameCaption, MVTypeTag, MusicCaption, LyricsUnderstanding,
                                  UnifiedMusicCaption, MVDescription)}
VISION = {"FrameCaptions", "MVTypeTag"}
FENCE_OPEN = re.compile(r"^<<<(LYRICS-[0-9A-F]{12})$", re.M)
FENCE_CLOSE = re.compile(r"^(LYRICS-[0-9A-F]{12})>>>$", re.M)
COLOURS = {"red": (200, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 200), "yellow": (220, 200, 40),
           "pink": (220, 120, 160), "teal": (40, 160, 160), "grey": (128, 128, 128), "black": (15, 15, 15),
           "white": (240, 240, 240), "orange": (230, 130, 30), "purple": (130, 50, 160), "brown": (120, 80, 40)}


class Reject(Exception):
    def __init__(self, status: int, message: str, code: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


@dataclass
class Fault:
    kind: str  # "429", "500", "hang", "malformed", "invalid"
    times: int = 1
    schema: str | None = None  # only requests for this response model
    retry_after: float = 0.2


@dataclass
class Batch:
    id: str
    input_file_id: str
    created_at: int
    status: str = "validating"
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})
    errors: list = field(default_factory=list)
    metadata: dict | None = None


class FakeOpenAI:
    def __init__(self, api_key: str, *, frames: int = 15, frames_mode: str = "clip", detail: str = "low",
                 contact_detail: str = "low", reject_json_schema: bool = False, hang_seconds: float = 2.5,
                 lifetime: float = 600.0, max_file_bytes: int = 200_000_000) -> None:
        self.api_key, self.frames, self.frames_mode = api_key, frames, frames_mode
        self.detail, self.contact_detail = detail, contact_detail
        self.reject_json_schema, self.hang_seconds, self.lifetime = reject_json_schema, hang_seconds, lifetime
        self.max_file_bytes = max_file_bytes
        self.log: list[dict] = []  # one entry per HTTP request (and per batch line processed)
        self.chat_bodies: list[dict] = []  # every chat body that passed validation (online and batch)
        self.faults: list[Fault] = []
        self.extra_models: dict[str, type] = {}  # response models registered by a test (register())
        self.scripts: dict[str, Callable[[str, dict], dict]] = {}  # their answers: (user text, body) -> object
        self.files: dict[str, dict] = {}
        self.batches: dict[str, Batch] = {}
        self.hold_batches = threading.Event()  # while set, batches stay in_progress
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ control

    def inject(self, kind: str, times: int = 1, schema: str | None = None, retry_after: float = 0.2) -> None:
        with self.lock:
            self.faults.append(Fault(kind, times, schema, retry_after))

    def register(self, model: type, answer: Callable[[str, dict], dict]) -> None:
        """Accept requests for another response model (strict schema checked as for the builder's),
        answered by ``answer(user_text, body)``; faults apply to it as to the others."""
        with self.lock:
            self.extra_models[model.__name__] = model
            self.scripts[model.__name__] = answer

    def _take_fault(self, schema: str | None) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and (fault.schema is None or fault.schema == schema):
                    fault.times -= 1
                    return fault
        return None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> "FakeOpenAI":
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        timer = getattr(self, "_timer", None)
        if timer is not None:
            timer.cancel()

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def count(self, method: str, path_prefix: str) -> int:
        with self.lock:
            return sum(1 for e in self.log if e["method"] == method and e["path"].startswith(path_prefix))

    # ------------------------------------------------------------------ chat

    def check_chat(self, body: dict) -> str:
        """Validate a chat body as strictly as the real API; return the response model's name."""
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise Reject(400, "model is required")
        messages = body.get("messages")
        if not isinstance(messages, list) or len(messages) < 2:
            raise Reject(400, "messages must hold a system and a user message")
        if messages[0].get("role") != "system" or not isinstance(messages[0].get("content"), str):
            raise Reject(400, "the first message must be a system message with text content")
        if body.get("temperature") != 0 or not isinstance(body.get("seed"), int):
            raise Reject(400, "tests require temperature=0 and an integer seed")
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_object":
            if not self.reject_json_schema:
                raise Reject(400, "this server expects json_schema")
            if "json" not in json.dumps(messages).lower():
                raise Reject(400, "'messages' must contain the word 'json' to use response_format json_object")
            name = _schema_title(messages[0]["content"])
        else:
            if self.reject_json_schema:
                raise Reject(400, "response_format of type json_schema is not supported by this model",
                             headers={"x-param": "response_format"})
            if fmt.get("type") != "json_schema":
                raise Reject(400, "response_format must be a json_schema")
            spec = fmt.get("json_schema") or {}
            name = spec.get("name")
            known = {**MODELS, **self.extra_models}
            if name not in known:
                raise Reject(400, f"unknown schema name {name!r}")
            if fmt != type_to_response_format_param(known[name]):
                raise Reject(400, f"response_format is not the strict json_schema of {name}")
        self._check_images(name, messages)
        if name == "LyricsUnderstanding":
            text = _user_text(messages)
            opens, closes = FENCE_OPEN.findall(text), FENCE_CLOSE.findall(text)
            if len(opens) != 1 or opens != closes:
                raise Reject(400, f"lyrics must be in exactly one fenced block (found {opens} / {closes})")
        return name

    def _check_images(self, name: str, messages: list[dict]) -> None:
        images = _images(messages)
        if name in VISION:
            expected = 1 if self.frames_mode == "contact" else self.frames
            detail = self.contact_detail if self.frames_mode == "contact" else self.detail
        elif name == "FrameCaption":
            expected, detail = 1, self.detail
        else:
            expected, detail = 0, None
        if len(images) != expected:
            raise Reject(400, f"{name}: expected {expected} images, got {len(images)}")
        for part in images:
            url, got_detail = part.get("url", ""), part.get("detail")
            if got_detail != detail:
                raise Reject(400, f"image detail {got_detail!r}, expected {detail!r}")
            if not url.startswith("data:image/jpeg;base64,"):
                raise Reject(400, "images must be base64 JPEG data URLs")
            raw = base64.b64decode(url.split(",", 1)[1])
            if raw[:2] != b"\xff\xd8" or cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR) is None:
                raise Reject(400, "an image is not a decodable JPEG")

    def answer(self, name: str, body: dict, fault: Fault | None) -> dict:
        messages = body["messages"]
        text = _user_text(messages)
        script = self.scripts.get(name)
        content = json.dumps(script(text, body) if script else self._content(name, text, _images(messages)))
        if fault is not None and fault.kind == "malformed":
            content = content[: len(content) // 2] + ' "oops'
        elif fault is not None and fault.kind == "invalid":
            content = json.dumps(_invalid(name, json.loads(content)))
        prompt_tokens = len(json.dumps(messages)) // 40 + 2833 * len(_images(messages))
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:12], "object": "chat.completion", "created": int(time.time()),
            "model": body["model"] + "-2024-07-18",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content, "refusal": None}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(content) // 4,
                      "total_tokens": prompt_tokens + len(content) // 4},
        }

    def _content(self, name: str, text: str, images: list[dict]) -> dict:
        colours = [_colour_of(part["url"]) for part in images]
        count = int(m.group(1)) if (m := re.search(r"Frame count: (\d+)", text)) else len(colours)
        if name == "FrameCaptions":
            cols = colours if len(colours) == count else colours * count
            return {"captions": [{"t": 2.0 * i, "caption": f"A frame dominated by {c} tones."}
                                 for i, c in enumerate(cols[:count])]}
        if name == "FrameCaption":
            t = float(m.group(1)) if (m := re.search(r"t=([\d.]+)s", text)) else 0.0
            return {"t": t, "caption": f"A single frame dominated by {colours[0]} tones."}
        if name == "MVTypeTag":
            return {"mv_type": MV_TYPES[sum(map(ord, "".join(colours))) % len(MV_TYPES)]}
        tempo = m.group(1) if (m := re.search(r"Tempo: ([\d.]+) BPM", text)) else "an unknown"
        key = m.group(1) if (m := re.search(r"Key: ([A-G][#b]? (?:major|minor))", text)) else "an unknown key"
        if name == "MusicCaption":
            return {"caption": f"A {tempo} BPM piece in {key} with a steady groove."}
        if name == "LyricsUnderstanding":
            return {"text": "The song reflects on longing and hope, addressed to someone far away."}
        if name == "UnifiedMusicCaption":
            return {"caption": f"At {tempo} BPM in {key}, the track pairs its groove with themes of longing."}
        if name == "MVDescription":
            return {"overview": f"A music video that moves at {tempo} BPM in {key}.",
                    "beats": [{"title": f"Moment {i + 1}", "text": f"Scene {i + 1} follows the music."}
                              for i in range(count)]}
        raise Reject(400, f"no answer for {name}")


def _schema_title(system: str) -> str:
    m = re.search(r'"title":"(\w+)","type":"object"\}$', system.strip())
    if m and m.group(1) in MODELS:
        return m.group(1)
    for name in MODELS:
        if f'"title":"{name}"' in system:
            return name
    raise Reject(400, "JSON mode request without a schema in the system message")


def _user_text(messages: list[dict]) -> str:
    out = []
    for message in messages[1:]:
        content = message.get("content")
        if isinstance(content, str):
            out.append(content)
        else:
            out += [p.get("text", "") for p in content or [] if p.get("type") == "text"]
    return "\n".join(out)


def _images(messages: list[dict]) -> list[dict]:
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            out += [p["image_url"] for p in content if p.get("type") == "image_url"]
    return out


def _colour_of(url: str) -> str:
    img = cv2.imdecode(np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    b, g, r = img.reshape(-1, 3).mean(axis=0)
    return min(COLOURS, key=lambda n: sum((x - y) ** 2 for x, y in zip(COLOURS[n], (r, g, b))))


def _invalid(name: str, good: dict) -> dict:
    if name == "MVDescription":
        return {**good, "beats": good["beats"][:-1]}  # one beat short: the stage rule must catch it
    if name == "FrameCaptions":
        return {**good, "captions": good["captions"][:-1]}
    if name == "MVTypeTag":
        return {"mv_type": "Documentary"}  # not one of the ten classes
    first = next(iter(good))
    return {f"{first}_wrong": good[first]}


# ---------------------------------------------------------------------- HTTP


def _handler(server: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, status: int, payload: Any, headers: dict | None = None, raw: bytes | None = None) -> None:
            data = raw if raw is not None else json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if raw is None else "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _error(self, exc: Reject) -> None:
            self._send(exc.status, {"error": {"message": exc.message, "type": exc.code, "param": None,
                                              "code": exc.code}}, headers=exc.headers)

        def _dispatch(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            entry = {"method": method, "path": self.path, "time": time.time(), "status": 200}
            with server.lock:
                server.log.append(entry)
            try:
                if self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    raise Reject(401, "Incorrect API key provided", code="invalid_api_key")
                status, payload, headers, blob = self._route(method, raw, entry)
            except Reject as exc:
                entry.update(status=exc.status, error=exc.message)
                self._error(exc)
                return
            entry["status"] = status
            self._send(status, payload, headers, blob)

        def do_GET(self) -> None:  # noqa: N802
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def _route(self, method: str, raw: bytes, entry: dict):
            path = self.path.split("?")[0]
            if method == "POST" and path == "/v1/chat/completions":
                return self._chat(json.loads(raw), entry)
            if method == "POST" and path == "/v1/files":
                return 200, self._upload(raw), None, None
            if method == "GET" and (m := re.fullmatch(r"/v1/files/([\w-]+)/content", path)):
                f = server.files.get(m.group(1)) or _missing("file")
                return 200, None, None, f["data"]
            if method == "POST" and path == "/v1/batches":
                return 200, self._create_batch(json.loads(raw)), None, None
            if method == "GET" and (m := re.fullmatch(r"/v1/batches/([\w-]+)", path)):
                return 200, _batch_json(server, self._advance(m.group(1))), None, None
            raise Reject(404, f"no route {method} {path}")

        def _chat(self, body: dict, entry: dict):
            name = server.check_chat(body)
            entry["schema"] = name
            fault = server._take_fault(name)
            if fault is not None:
                entry["fault"] = fault.kind
                if fault.kind == "429":
                    raise Reject(429, "Rate limit reached", code="rate_limit_exceeded",
                                 headers={"retry-after": str(fault.retry_after)})
                if fault.kind == "500":
                    raise Reject(500, "The server had an error", code="server_error")
                if fault.kind == "hang":
                    time.sleep(server.hang_seconds)
            with server.lock:
                server.chat_bodies.append(body)
            return 200, server.answer(name, body, fault), None, None

        def _upload(self, raw: bytes) -> dict:
            ctype = self.headers.get("Content-Type", "")
            if not ctype.startswith("multipart/form-data"):
                raise Reject(400, "files must be uploaded as multipart/form-data")
            msg = email.parser.BytesParser().parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
            fields, data, filename = {}, None, "upload.jsonl"
            for part in msg.get_payload():
                name = part.get_param("name", header="content-disposition")
                if name == "file":
                    data = part.get_payload(decode=True)
                    filename = part.get_filename() or filename
                else:
                    fields[name] = part.get_payload(decode=True).decode()
            if fields.get("purpose") != "batch" or data is None:
                raise Reject(400, "purpose must be 'batch' and a file is required")
            if len(data) > server.max_file_bytes:
                raise Reject(400, f"file is {len(data)} bytes; the limit is {server.max_file_bytes}")
            lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
            ids = [line["custom_id"] for line in lines]
            if len(ids) != len(set(ids)) or not ids:
                raise Reject(400, "custom_id values must be unique and the file non-empty")
            for line in lines:
                if line.get("method") != "POST" or line.get("url") != "/v1/chat/completions":
                    raise Reject(400, "every line must POST to /v1/chat/completions")
            file_id = "file-" + uuid.uuid4().hex[:16]
            with server.lock:
                server.files[file_id] = {"data": data, "filename": filename, "purpose": "batch", "lines": len(lines)}
            return {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                    "filename": filename, "purpose": "batch", "status": "processed"}

        def _create_batch(self, body: dict) -> dict:
            if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
                raise Reject(400, "endpoint must be /v1/chat/completions and completion_window 24h")
            if body.get("input_file_id") not in server.files:
                raise Reject(400, "input_file_id not found")
            batch = Batch(id="batch_" + uuid.uuid4().hex[:16], input_file_id=body["input_file_id"],
                          created_at=int(time.time()), metadata=body.get("metadata"))
            with server.lock:
                server.batches[batch.id] = batch
            return _batch_json(server, batch)

        def _advance(self, batch_id: str) -> Batch:
            with server.lock:
                batch = server.batches.get(batch_id) or _missing("batch")
                if batch.status == "validating":
                    batch.status = "in_progress"
                elif batch.status == "in_progress" and not server.hold_batches.is_set():
                    _run_batch(server, batch)
                return batch

    return Handler


def _missing(what: str):
    raise Reject(404, f"{what} not found")


def _run_batch(server: FakeOpenAI, batch: Batch) -> None:
    lines = [json.loads(x) for x in server.files[batch.input_file_id]["data"].decode().splitlines() if x.strip()]
    out, err = [], []
    for line in lines:
        entry = {"method": "BATCH", "path": "line", "custom_id": line["custom_id"], "batch": batch.id}
        server.log.append(entry)
        try:
            name = server.check_chat(line["body"])
            fault = server._take_fault(name)
            if fault is not None and fault.kind in ("429", "500"):
                raise Reject(int(fault.kind), "injected " + fault.kind)
            server.chat_bodies.append(line["body"])
            response = {"status_code": 200, "request_id": uuid.uuid4().hex,
                        "body": server.answer(name, line["body"], fault)}
            out.append({"id": "batch_req_" + uuid.uuid4().hex[:8], "custom_id": line["custom_id"],
                        "response": response, "error": None})
        except Reject as exc:
            entry["status"] = exc.status
            err.append({"id": "batch_req_" + uuid.uuid4().hex[:8], "custom_id": line["custom_id"],
                        "response": {"status_code": exc.status, "request_id": uuid.uuid4().hex,
                                     "body": {"error": {"message": exc.message, "type": exc.code}}},
                        "error": None})
    for items, attr in ((out, "output_file_id"), (err, "error_file_id")):
        if items:
            file_id = "file-" + uuid.uuid4().hex[:16]
            server.files[file_id] = {"data": "".join(json.dumps(i) + "\n" for i in items).encode(),
                                     "filename": f"{batch.id}_{attr}.jsonl", "purpose": "batch_output"}
            setattr(batch, attr, file_id)
    batch.counts = {"total": len(lines), "completed": len(out), "failed": len(err)}
    batch.status = "completed"


def _batch_json(server: FakeOpenAI, batch: Batch) -> dict:
    return {"id": batch.id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
            "input_file_id": batch.input_file_id, "completion_window": "24h", "status": batch.status,
            "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
            "created_at": batch.created_at, "request_counts": batch.counts, "metadata": batch.metadata}
