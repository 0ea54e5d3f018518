"""The web app's HTTP layer: a FastAPI app over ``charpoet.web.service``.

    app = create_app(Service(Path("runs")))        # uvicorn.run(app) serves it

The page (``charpoet/web/static``) and a JSON API for everything it does. Streams are
``text/event-stream``: one ``token`` event per token, then a ``done`` event (with the
attribution), or an ``error`` event. Errors are ``{"error": "one line"}`` with a 4xx status;
the server keeps serving. Token computation runs in the service's pool of worker threads, never
on the event loop; a stream stops when its client goes away. The OpenAPI description is at
``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict, fields
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from charpoet.errors import CharpoetError, CheckpointError, ConfigError
from charpoet.web.service import Busy, NotFound, Pump, Service, attribution_json, unattributed_json

log = logging.getLogger("charpoet.serve")
FIRST_PULL_SECONDS = 0.0  # the first token goes out alone, at once
PULL_SECONDS = 0.02  # later pulls return what 20 ms computed (or PULL_MOST tokens)
PULL_MOST = 256
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# --- request bodies ------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplingBody(_Body):
    temperature: float = Field(0.8, description="logits are divided by T; 0 = greedy")
    top_k: int = Field(0, description="sample from the k most likely tokens; 0 = off")
    top_p: float = Field(1.0, description="sample from the smallest set with probability >= p; 1 = off")
    seed: int | None = Field(None, description="random seed for reproducible text")


class GenerateBody(SamplingBody):
    run: str = Field(description="the run's name, as GET /api/runs lists it")
    prompt: str = Field("\n", description="the text the samples continue")
    length: int = Field(500, description="tokens per sample")
    num_samples: int = Field(1, description="samples written together")
    min_quote: int | None = Field(None, description="shortest verbatim copy to highlight (characters)")


class AttributeBody(_Body):
    run: str
    text: str
    min_quote: int | None = None


class ChatBody(SamplingBody):
    run: str | None = Field(None, description="the run, to start a conversation")
    conversation: str | None = Field(None, description="the id of a conversation to continue")
    text: str = Field(description="the user's turn")
    max_length: int = Field(300, description="most tokens of an answer")
    sentences: int = Field(2, description="sentence ends that finish an answer")
    user_prefix: str = ""
    bot_prefix: str = ""


class ConversationBody(_Body):
    conversation: str


class _BodyLimit:
    """Refuses a request body of more than ``most`` bytes (413, a JSON error) before it is parsed:
    at once when its length is declared (the server holds a body to that length), or while it
    arrives when it is sent in chunks (then it is read here, and handed on whole)."""

    def __init__(self, app: Any, most: int):
        self.app, self.most = app, most

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = error(413, f"the request body is larger than this server takes ({self.most:,} bytes)")
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit():
            if int(declared) > self.most:
                await too_large(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        parts: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > self.most:
                await too_large(scope, receive, send)
                return
            more = message.get("more_body", False)
        handed = False

        async def replay() -> Any:
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": b"".join(parts), "more_body": False}
            return await receive()  # then what comes after the body: a disconnect

        await self.app(scope, replay, send)


class _Revalidated(StaticFiles):
    """The page's files, which browsers must check again before reuse (``no-cache``), so that an
    upgraded charpoet never runs yesterday's scripts against today's page."""

    def file_response(self, *args: Any, **kwargs: Any) -> Any:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


# --- errors --------------------------------------------------------------------------------
def _status(exc: CharpoetError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Busy):
        return exc.status
    if isinstance(exc, CheckpointError):
        return 409  # the run is there but cannot be used (incomplete, damaged)
    return 400


def error(status: int, message: str) -> JSONResponse:
    first = (str(message).strip().splitlines() or ["error"])[0]
    return JSONResponse({"error": first}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "bad request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"malformed JSON: {first.get('ctx', {}).get('error', first.get('msg'))}"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    msg = first.get("msg", "invalid")
    if first.get("type") == "missing":
        return f"{where} is required" if where else "the request needs a JSON body"
    if first.get("type") == "extra_forbidden":
        return f"unknown field {where!r}"
    return f"{where}: {msg}" if where else msg


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, allow_nan=False)}\n\n".encode("utf-8")


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# --- the app -------------------------------------------------------------------------------
def create_app(service: Service, allowed_hosts: list[str] | None = None) -> FastAPI:
    """The FastAPI app serving ``service``'s runs; ``app.state.service`` is ``service``.

    ``allowed_hosts``: the only ``Host`` headers answered (``charpoet serve`` on a loopback address
    allows ``localhost``, ``127.0.0.1`` and ``::1``, so a page of another site cannot reach it by
    rebinding a DNS name to 127.0.0.1); None answers any.
    """
    import charpoet.chat  # noqa: F401  (torch, numpy, numba: imported now, not by the first request,
    import charpoet.sample  # noqa: F401  which would hold up the event loop for seconds)

    limits = service.limits
    most_chars = max(limits.max_prompt_chars, limits.max_attribute_chars)
    app = FastAPI(title="charpoet", summary="Write with trained char-RNNs and see what they copy.",
                  docs_url=None, redoc_url=None)  # the interactive docs would load scripts from a CDN
    app.add_middleware(_BodyLimit, most=12 * most_chars + (64 << 10))  # a character is at most 12 bytes of JSON
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.state.service = service
    static = resources.files("charpoet.web") / "static"
    app.mount("/static", _Revalidated(directory=str(static)), name="static")

    @app.exception_handler(CharpoetError)
    async def _charpoet_error(request: Request, exc: CharpoetError) -> JSONResponse:
        return error(_status(exc), str(exc))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(400, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return error(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(static / "index.html"), headers={"Cache-Control": "no-cache"})

    @app.get("/api/health", summary="Liveness, load and limits")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "generations": service.slots.active, "conversations": len(service.conversations),
                "limits": asdict(service.limits), "min_quote": service.min_quote}

    @app.get("/api/runs", summary="The runs this server offers, best validation loss first")
    async def runs() -> dict[str, Any]:
        return {"runs": await run_in_threadpool(service.runs.summaries)}

    @app.get("/api/runs/{name:path}/metrics", summary="A run's metrics history (metrics.jsonl)")
    async def metrics(name: str) -> dict[str, Any]:
        records = await run_in_threadpool(service.runs.metrics, name)
        training = await run_in_threadpool(service.runs.training, name)
        return {"run": name, "training": training, "records": records}

    @app.get("/api/runs/{name:path}/samples", summary="A run's latest training samples, with attribution")
    async def samples(name: str, limit: int = 6) -> dict[str, Any]:
        if not 0 <= limit <= 100:
            raise ConfigError(f"limit must be in 0..100, got {limit}")
        found = await run_in_threadpool(service.runs.samples, name, limit, service.min_quote)
        return {"run": name, "samples": found}

    @app.post("/api/attribute", summary="Verbatim copies of a run's sources in a text")
    async def attribute(body: AttributeBody) -> dict[str, Any]:
        if len(body.text) > service.limits.max_attribute_chars:
            raise ConfigError(f"text is too long: {len(body.text):,} characters "
                              f"(at most {service.limits.max_attribute_chars:,})")
        min_quote = _min_quote(service, body.min_quote)
        index = await run_in_threadpool(service.runs.index, body.run)
        att = await run_in_threadpool(index.attribute, body.text, min_quote)
        return attribution_json(att)

    @app.post("/api/generate", summary="Write samples; answers text/event-stream",
              response_description="events: token {texts: [one piece per sample]}, then done "
                                   "{samples: [attribution per sample]} or error {error}")
    async def generate(body: GenerateBody, request: Request) -> StreamingResponse:
        from charpoet.sample import SampleOptions

        limits = service.limits
        _check_prompt(body.prompt, limits.max_prompt_chars, "prompt")
        if body.length > limits.max_length:
            raise ConfigError(f"length must be at most {limits.max_length:,}, got {body.length:,}")
        if body.num_samples > limits.max_samples:
            raise ConfigError(f"num_samples must be at most {limits.max_samples}, got {body.num_samples}")
        if not body.prompt:
            raise ConfigError("the prompt is empty; give at least one character")
        options = SampleOptions(temperature=body.temperature, top_k=body.top_k, top_p=body.top_p, seed=body.seed,
                                length=body.length, num_samples=body.num_samples).validate(_names(SampleOptions))
        min_quote = _min_quote(service, body.min_quote)
        lm = await run_in_threadpool(service.runs.model, body.run)
        stream = lm.stream(body.prompt, options)  # checks the prompt against the vocabulary
        pump = Pump(stream, on_close=service.slots.acquire(_client(request)))

        async def attributions(texts: list[str]) -> dict[str, Any]:
            def attribute_all(index: Any) -> list[dict[str, Any]]:
                return [attribution_json(index.attribute(t, min_quote), body.prompt) for t in texts]

            try:
                index = await run_in_threadpool(service.runs.index, body.run)
                return {"samples": await run_in_threadpool(attribute_all, index)}  # not on the event loop
            except CharpoetError as exc:  # no sources, or too many to index: the text stands without highlighting
                return {"samples": [unattributed_json(t, body.prompt) for t in texts],
                        "attribution_error": str(exc)}

        async def events() -> AsyncIterator[bytes]:
            texts: list[list[str]] = [[] for _ in range(options.num_samples)]
            async for batch in _drain(service, pump):
                for pieces in batch:
                    for out, piece in zip(texts, pieces):
                        out.append(piece)
                yield b"".join(_sse("token", {"texts": pieces}) for pieces in batch)
            yield _sse("done", await attributions(["".join(t) for t in texts]))

        return _EventStream(events(), pump)

    @app.post("/api/chat", summary="Say a turn; the answer streams as text/event-stream",
              response_description="events: start {conversation}, token {text}, then done {answer, stop, "
                                   "turns} or error {error}")
    async def chat(body: ChatBody, request: Request) -> StreamingResponse:
        from charpoet.chat import ChatOptions, Conversation

        for field in ("text", "user_prefix", "bot_prefix"):  # all three are fed with every turn
            _check_prompt(getattr(body, field), service.limits.max_prompt_chars, field)
        if body.max_length > service.limits.max_length:
            raise ConfigError(f"max_length must be at most {service.limits.max_length:,}, got {body.max_length:,}")
        options = ChatOptions(temperature=body.temperature, top_k=body.top_k, top_p=body.top_p, seed=body.seed,
                              max_length=body.max_length, sentences=body.sentences, user_prefix=body.user_prefix,
                              bot_prefix=body.bot_prefix).validate(_names(ChatOptions))
        release_slot = service.slots.acquire(_client(request))  # first: a refused request leaves nothing behind
        try:
            if body.conversation:
                session = service.conversations.get(body.conversation)
                cid = body.conversation
                if body.run is not None and body.run != session.run:
                    raise ConfigError(f"conversation {cid} is with run {session.run!r}, not {body.run!r}")
            elif body.run is not None:
                lm = await run_in_threadpool(service.runs.model, body.run)
                conversation = Conversation(lm, options)
                conversation.stream(body.text)  # unknown characters: an error before a conversation is kept
                cid = service.conversations.create(body.run, conversation)
                session = service.conversations.get(cid)
            else:
                raise ConfigError("give the run to start a conversation, or the id of one to continue")
            if not session.lock.acquire(blocking=False):
                raise Busy("this conversation is answering already; wait for the answer or stop it", 409)
            try:
                conversation = session.conversation
                if body.conversation:
                    conversation.options = options  # this turn's options (a seed applies on reset)
                stream = conversation.stream(body.text)  # unknown characters: an error now, nothing changed
            except BaseException:
                session.lock.release()
                raise
        except BaseException:
            release_slot()
            raise

        def release() -> None:
            release_slot()
            session.lock.release()

        pump = Pump(stream, on_close=release)

        async def events() -> AsyncIterator[bytes]:
            yield _sse("start", {"conversation": cid, "run": session.run})
            async for batch in _drain(service, pump):
                yield b"".join(_sse("token", {"text": piece}) for piece in batch)
            if pump.finished:
                yield _sse("done", _conversation_json(cid, session.run, conversation))

        return _EventStream(events(), pump)

    @app.post("/api/chat/undo", summary="Forget the last exchange of a conversation")
    async def undo(body: ConversationBody) -> dict[str, Any]:
        session = service.conversations.get(body.conversation)
        with _holding(session):
            undone = session.conversation.undo()
            return {**_conversation_json(body.conversation, session.run, session.conversation), "undone": undone}

    @app.post("/api/chat/reset", summary="Forget everything a conversation has said")
    async def reset(body: ConversationBody) -> dict[str, Any]:
        session = service.conversations.get(body.conversation)
        with _holding(session):
            session.conversation.reset()
            return _conversation_json(body.conversation, session.run, session.conversation)

    @app.get("/api/chat/{conversation}", summary="A conversation's turns")
    async def turns(conversation: str) -> dict[str, Any]:
        session = service.conversations.get(conversation)
        return _conversation_json(conversation, session.run, session.conversation)

    return app


class _holding:
    """The conversation's lock for an undo or reset; ``Busy`` (409) while it is answering."""

    def __init__(self, session: Any):
        self.session = session

    def __enter__(self) -> None:
        if not self.session.lock.acquire(blocking=False):
            raise Busy("this conversation is answering; wait for the answer or stop it", 409)

    def __exit__(self, *exc: Any) -> None:
        self.session.lock.release()


def _conversation_json(cid: str, run: str, conversation: Any) -> dict[str, Any]:
    turns = conversation.turns
    last = turns[-1] if turns else None
    return {"conversation": cid, "run": run, "answer": last.answer if last else None,
            "stop": last.stop if last else None,
            "turns": [{"user": t.user, "answer": t.answer, "stop": t.stop} for t in turns]}


def _names(options_class: type) -> dict[str, str]:
    """Error messages name a JSON field as it is spelled in the request."""
    return {f.name: f.name for f in fields(options_class)}


def _check_prompt(text: str, most: int, field: str) -> None:
    if len(text) > most:
        raise ConfigError(f"{field} is too long: {len(text):,} characters (at most {most:,})")


def _min_quote(service: Service, value: int | None) -> int:
    from charpoet.attribution import check_min_quote

    return service.min_quote if value is None else check_min_quote(value)


class _EventStream(StreamingResponse):
    """``text/event-stream`` of ``events``; its pump is cancelled however the response ends, even
    one whose body never started (a client that left at once)."""

    def __init__(self, events: AsyncIterator[bytes], pump: Pump):
        super().__init__(_guarded(events), media_type="text/event-stream", headers=SSE_HEADERS)
        self.pump = pump

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.pump.cancel()


async def _drain(service: Service, pump: Pump) -> AsyncIterator[list[Any]]:
    """The pump's items, pulled in the service's worker pool, a batch at a time (its events go out
    in one write: written one by one, a batch would keep writing to a client that has gone away
    before the server hears of it); the pump is cancelled however the stream ends."""
    loop = asyncio.get_running_loop()
    try:
        first = True
        while True:
            batch = await loop.run_in_executor(service.pool, pump.pull, 1 if first else PULL_MOST,
                                               FIRST_PULL_SECONDS if first else PULL_SECONDS)
            first = False
            if not batch:
                return
            yield batch
    finally:
        pump.cancel()


async def _guarded(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """An error once streaming has begun becomes an ``error`` event (the status is already sent)."""
    try:
        async for chunk in events:
            yield chunk
    except CharpoetError as exc:
        yield _sse("error", {"error": str(exc).strip().splitlines()[0] if str(exc).strip() else "error"})
    except Exception as exc:  # a bug: logged, and the client still hears why its stream ended
        log.exception("error while streaming")
        yield _sse("error", {"error": f"internal error: {type(exc).__name__}: {exc}"})
