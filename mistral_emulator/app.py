"""The aiohttp application: routes under /v1 following Mistral's published spec, plus /admin routes
for tests. One middleware applies, in order: auth, rate limit, injected faults, fixed latency, and
the per-route statistics."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import orjson
from aiohttp import web

from . import auth, validation
from .account import BATCH_STATUSES, FT_STATUSES, Account
from .batch_runner import API_ENDPOINTS, BatchRunner
from .classifiers import classification, moderation
from .errors import ApiError, bad_request, detail_item, not_found, server_error, validation_error
from .faults import FaultInjector
from .fim import fim_completion
from .inference import ChatResult, chat_completion, embeddings, stream_chunks
from .ocr import ocr
from .pagination import cursor_page, decode_cursor, page_slice
from .ratelimit import RateLimiter, RequestLimits, rate_limited_body
from .settings import LIMIT_KNOBS, EmulatorSettings
from .stats import Stats

JSON = {"Content-Type": "application/json"}
_DUMP_OPTS = orjson.OPT_SERIALIZE_NUMPY
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
FILE_PURPOSES = ("fine-tune", "batch", "ocr")
SAMPLE_TYPES = ("pretrain", "instruct", "batch_request", "batch_result", "batch_error")
FILE_SOURCES = ("upload", "repository", "mistral")
STATE: web.AppKey[EmulatorState] = web.AppKey("emulator_state")
# Per-request marks set by the fault middleware for the handler (and back).
FAULT = web.RequestKey("emulator_fault", str)
TRUNCATED = web.RequestKey("emulator_truncated", bool)
# The request's view of its key's account limits, for the handlers that spend tokens.
LIMITS = web.RequestKey("emulator_limits", RequestLimits)


class EmulatorState:
    def __init__(self, api_key: str, settings: EmulatorSettings):
        self.api_key = api_key
        self.settings = settings
        self.account = Account(settings)
        self.runner = BatchRunner(self.account)
        self.stats = Stats()
        self.limiter = RateLimiter()
        self.faults = FaultInjector(settings.seed)
        # Signs the URLs of /v1/files/{id}/url; derived from the key so it never leaves the process.
        self.url_secret = hashlib.sha256(b"signed-url:" + api_key.encode()).digest()

    def configure(self, **knobs: Any) -> dict:
        self.settings.update(**knobs)
        if LIMIT_KNOBS.intersection(knobs):
            self.limiter.reset()
        return self.settings.knobs()


def json_response(payload: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload, option=_DUMP_OPTS)
    return web.Response(body=body, status=status, headers={**JSON, **(headers or {})})


def route_key(request: web.Request) -> str:
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None or getattr(info, "http_exception", None) is not None:
        return f"{request.method} <unmatched>"
    return f"{request.method} {resource.canonical}"


async def _truncate(request: web.Request, response: web.Response) -> web.StreamResponse:
    """Sends the status and a Content-Length for the whole body, then only part of it, then closes."""
    body = response.body if isinstance(response.body, (bytes, bytearray)) else b""
    stream = web.StreamResponse(status=response.status, headers=response.headers)
    stream.content_length = len(body)
    await stream.prepare(request)
    await stream.write(bytes(body[: max(1, len(body) // 2)]))
    transport = request.transport
    if transport is not None:
        transport.close()
    return stream


def _is_absent(settings: EmulatorSettings, method: str, path: str, key: str) -> bool:
    """A route switched off with `absent_routes`, named by its path, by method and path, or by its
    template as the stats name it (e.g. "GET /v1/files/{file_id}/content")."""
    routes = settings.absent_routes
    return bool(routes) and (path in routes or f"{method} {path}" in routes or key in routes)


@web.middleware
async def emulator_middleware(request: web.Request, handler):
    state: EmulatorState = request.app[STATE]
    path = request.path
    if path.startswith("/admin/"):
        return await handler(request)
    key = route_key(request)
    stats = state.stats
    settings = state.settings
    limits: RequestLimits | None = None
    try:
        if path.startswith("/v1/") or path == "/v1":
            if settings.redirect_to:
                # A proxy in front of the API answers before any key is looked at.
                stats.record(key, str(settings.redirect_status))
                location = settings.redirect_to.rstrip("/") + request.path_qs
                return web.Response(status=settings.redirect_status, headers={"Location": location})
            api_key = auth.check(request, state.api_key, settings.auth_query_params)
            if _is_absent(settings, request.method, path, key):
                raise not_found("Not Found")
            limits = state.limiter.begin(api_key, settings)
            if limits is not None:
                request[LIMITS] = limits
            fault = (
                state.faults.draw(settings, request.method, path) if key != f"{request.method} <unmatched>" else None
            )
            if fault is not None:
                stats.faults[fault] += 1
                if fault == "429":
                    raise ApiError(429, rate_limited_body(settings.rate_limit_body), {"Retry-After": "1"})
                if fault == "drop":
                    transport = request.transport
                    if transport is not None:
                        transport.abort()
                    stats.record(key, "dropped")
                    return web.Response(status=499)
                if fault != "truncate":
                    raise ApiError(int(fault), server_error(int(fault)))
                request[FAULT] = "truncate"
            if settings.latency_ms > 0:
                await asyncio.sleep(settings.latency_ms / 1000.0)
        response = await handler(request)
    except ApiError as exc:
        stats.record(key, str(exc.status))
        if exc.cause is not None:
            stats.refused(exc.cause)
            # A refusal computed its own headers, with the meters as they were when it refused.
            return json_response(exc.body, exc.status, exc.headers)
        headers = limits.headers() if limits is not None else {}
        return json_response(exc.body, exc.status, {**headers, **exc.headers})
    except web.HTTPException as exc:
        stats.record(key, str(exc.status))
        detail = "Not Found" if exc.status == 404 else "Method Not Allowed" if exc.status == 405 else exc.reason
        return json_response({"detail": detail}, exc.status)
    except ConnectionError:
        # The client went away mid-response; there is nobody to answer.
        stats.record(key, "client_closed")
        raise
    except Exception:
        # A bug in the emulator still answers in the API's error shape, and logs nothing about the
        # request (its body may hold prompts or records).
        stats.record(key, "500")
        return json_response(server_error(500), 500)
    if limits is not None and not response.prepared:
        response.headers.update(limits.headers())
    if request.get(FAULT) == "truncate" and isinstance(response, web.Response) and not response.prepared:
        stats.record(key, "truncated")
        return await _truncate(request, response)
    stats.record(key, "truncated" if request.get(TRUNCATED) else str(response.status))
    return response


async def _body(request: web.Request) -> Any:
    return validation.parse_json_body(await request.read())


async def _token_latency(state: EmulatorState, tokens: int) -> None:
    per_token = state.settings.latency_per_token_ms
    if per_token > 0 and tokens > 0:
        await asyncio.sleep(per_token * tokens / 1000.0)


# ---- models -----------------------------------------------------------------------------------------
async def list_models(request: web.Request) -> web.Response:
    account = request.app[STATE].account
    return json_response(
        account.cached("models", lambda: orjson.dumps({"object": "list", "data": account.model_cards()}))
    )


async def get_model(request: web.Request) -> web.Response:
    model = request.app[STATE].account.model(request.match_info["model_id"])
    if model is None:
        raise not_found("Model not found")
    return json_response(model.card())


# ---- files -------------------------------------------------------------------------------------------
def _file_filters(query) -> tuple:
    purpose = query.get("purpose") or None
    if purpose is not None and purpose not in FILE_PURPOSES:
        expected = "'fine-tune', 'batch' or 'ocr'"
        raise validation_error(
            [detail_item("enum", ["query", "purpose"], f"Input should be {expected}", purpose, {"expected": expected})]
        )
    sample_types = validation.query_enum_list(query, "sample_type", SAMPLE_TYPES)
    sources = validation.query_enum_list(query, "source", FILE_SOURCES)
    mimetypes = query.getall("mimetypes", []) or None
    search = query.get("search") or None
    return purpose, tuple(sample_types or ()), tuple(sources or ()), tuple(mimetypes or ()), search


async def list_files(request: web.Request) -> web.Response:
    account = request.app[STATE].account
    q = request.query
    page = validation.query_int(q, "page", 0, ge=0)
    page_size = validation.query_int(q, "page_size", 100, ge=1)
    include_total = validation.query_bool(q, "include_total", True)
    filters = _file_filters(q)

    def build() -> bytes:
        purpose, sample_types, sources, mimetypes, search = filters
        items = account.sorted_files()
        if any(filters):
            needle = search.lower() if search else None
            items = [
                f
                for f in items
                if (purpose is None or f["purpose"] == purpose)
                and (not sample_types or f["sample_type"] in sample_types)
                and (not sources or f["source"] in sources)
                and (not mimetypes or f["mimetype"] in mimetypes)
                and (needle is None or needle in f["filename"].lower() or needle == f["id"])
            ]
        out: dict = {"data": list(page_slice(items, page, page_size)), "object": "list"}
        out["total"] = len(items) if include_total else None
        return orjson.dumps(out)

    return json_response(account.cached(("files", page, page_size, include_total, filters), build))


def _file_or_404(account: Account, file_id: str) -> dict:
    meta = account.files.get(file_id)
    if meta is None:
        raise not_found("File not found")
    return meta


async def get_file(request: web.Request) -> web.Response:
    meta = _file_or_404(request.app[STATE].account, request.match_info["file_id"])
    return json_response({**meta, "deleted": False})


async def delete_file(request: web.Request) -> web.Response:
    account = request.app[STATE].account
    file_id = request.match_info["file_id"]
    _file_or_404(account, file_id)
    account.delete_file(file_id)
    return json_response({"id": file_id, "object": "file", "deleted": True})


async def download_file(request: web.Request) -> web.Response:
    account = request.app[STATE].account
    meta = _file_or_404(account, request.match_info["file_id"])
    content = account.content_of(meta["id"]) or b""
    return web.Response(
        body=content,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{meta["filename"]}"',
        },
    )


def _url_signature(state: EmulatorState, file_id: str, expires: int) -> str:
    return hmac.new(state.url_secret, f"{file_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]


async def signed_url(request: web.Request) -> web.Response:
    state = request.app[STATE]
    meta = _file_or_404(state.account, request.match_info["file_id"])
    expiry = validation.query_int(request.query, "expiry", 24, ge=1, le=168)
    expires = int(time.time()) + expiry * 3600
    sig = _url_signature(state, meta["id"], expires)
    url = f"{request.scheme}://{request.host}/signed/files/{meta['id']}?se={expires}&sig={sig}"
    return json_response({"url": url})


async def signed_download(request: web.Request) -> web.Response:
    state = request.app[STATE]
    file_id = request.match_info["file_id"]
    try:
        expires = int(request.query.get("se", ""))
    except ValueError:
        raise ApiError(403, {"detail": "Invalid signature"}) from None
    sig = request.query.get("sig", "")
    if expires < time.time() or not hmac.compare_digest(sig, _url_signature(state, file_id, expires)):
        raise ApiError(403, {"detail": "Invalid signature"})
    content = state.account.content_of(file_id)
    if content is None:
        raise not_found("File not found")
    return web.Response(body=content, headers={"Content-Type": "application/octet-stream"})


async def upload_file(request: web.Request) -> web.Response:
    account = request.app[STATE].account
    ctype = request.headers.get("Content-Type", "")
    if not ctype.startswith("multipart/form-data"):
        raise validation_error([detail_item("missing", ["body", "file"], "Field required", None)])
    form = await request.post()
    part = form.get("file")
    if part is None or not hasattr(part, "file"):
        raise validation_error([detail_item("missing", ["body", "file"], "Field required", None)])
    purpose = form.get("purpose") or "fine-tune"
    if purpose not in FILE_PURPOSES:
        expected = "'fine-tune', 'batch' or 'ocr'"
        raise validation_error(
            [detail_item("enum", ["body", "purpose"], f"Input should be {expected}", purpose, {"expected": expected})]
        )
    visibility = form.get("visibility") or "workspace"
    if visibility not in ("workspace", "user"):
        raise validation_error(
            [
                detail_item(
                    "enum",
                    ["body", "visibility"],
                    "Input should be 'workspace' or 'user'",
                    visibility,
                    {"expected": "'workspace' or 'user'"},
                )
            ]
        )
    expiry_raw = form.get("expiry")
    try:
        expiry = int(expiry_raw) if expiry_raw not in (None, "") else None
    except ValueError:
        raise validation_error(
            [
                detail_item(
                    "int_parsing",
                    ["body", "expiry"],
                    "Input should be a valid integer, unable to parse string as an integer",
                    expiry_raw,
                )
            ]
        ) from None
    content = part.file.read()
    meta = account.add_file(
        content, part.filename or "upload", purpose, mimetype=part.content_type, expiry=expiry, visibility=visibility
    )
    return json_response(meta)


# ---- batch jobs --------------------------------------------------------------------------------------
async def list_batch_jobs(request: web.Request) -> web.Response:
    account = request.app[STATE].account
    q = request.query
    page = validation.query_int(q, "page", 0, ge=0)
    page_size = validation.query_int(q, "page_size", 100, ge=1)
    statuses = validation.query_enum_list(q, "status", BATCH_STATUSES)
    created_after = validation.query_datetime(q, "created_after")
    order_by = q.get("order_by", "-created")
    if order_by not in ("created", "-created"):
        raise validation_error(
            [
                detail_item(
                    "enum",
                    ["query", "order_by"],
                    "Input should be 'created' or '-created'",
                    order_by,
                    {"expected": "'created' or '-created'"},
                )
            ]
        )
    model = q.get("model") or None
    agent_id = q.get("agent_id") or None
    metadata = None
    if q.get("metadata"):
        try:
            metadata = orjson.loads(q["metadata"])
        except orjson.JSONDecodeError as error:
            raise validation_error(
                [detail_item("json_invalid", ["query", "metadata"], "Invalid JSON", q["metadata"])]
            ) from error
    key = ("batch", page, page_size, tuple(statuses or ()), created_after, order_by, model, agent_id, q.get("metadata"))

    def build() -> bytes:
        items = account.sorted_jobs()
        if order_by == "created":
            items = items[::-1]
        if statuses or created_after is not None or model or agent_id or metadata:
            wanted = set(statuses or ())
            items = [
                j
                for j in items
                if (not wanted or j["status"] in wanted)
                # Inclusive bound: an incremental reader that passes its last cursor re-reads the
                # boundary record instead of missing one created in the same second.
                and (created_after is None or j["created_at"] >= created_after)
                and (model is None or j["model"] == model)
                and (agent_id is None or j["agent_id"] == agent_id)
                and (
                    not isinstance(metadata, dict)
                    or all((j["metadata"] or {}).get(k) == v for k, v in metadata.items())
                )
            ]
        return orjson.dumps({"data": list(page_slice(items, page, page_size)), "object": "list", "total": len(items)})

    return json_response(account.cached(key, build))


def _job_or_404(state: EmulatorState, job_id: str) -> dict:
    job = state.account.batch_jobs.get(job_id)
    if job is None:
        raise not_found("Batch job not found")
    return job


async def create_batch_job(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return json_response(state.runner.create(await _body(request)))


async def get_batch_job(request: web.Request) -> web.Response:
    state = request.app[STATE]
    job = _job_or_404(state, request.match_info["job_id"])
    inline = validation.query_bool(request.query, "inline", None)
    return json_response(state.runner.view(job, bool(inline)))


async def cancel_batch_job(request: web.Request) -> web.Response:
    state = request.app[STATE]
    job = _job_or_404(state, request.match_info["job_id"])
    return json_response(state.runner.cancel(job["id"]))


async def delete_batch_job(request: web.Request) -> web.Response:
    state = request.app[STATE]
    job = _job_or_404(state, request.match_info["job_id"])
    state.account.batch_jobs.pop(job["id"], None)
    state.account.touch()
    return json_response({"id": job["id"], "object": "batch", "deleted": True})


# ---- fine-tuning jobs (legacy) -----------------------------------------------------------------------
def _fine_tuning_enabled(state: EmulatorState) -> None:
    if not state.settings.fine_tuning:
        # What the current API answers since the endpoints were removed.
        raise not_found("Not Found")


async def list_ft_jobs(request: web.Request) -> web.Response:
    state = request.app[STATE]
    _fine_tuning_enabled(state)
    q = request.query
    page = validation.query_int(q, "page", 0, ge=0)
    page_size = validation.query_int(q, "page_size", 100, ge=1)
    after = validation.query_datetime(q, "created_after")
    before = validation.query_datetime(q, "created_before")
    status = q.get("status") or None
    if status is not None and status not in FT_STATUSES:
        expected = ", ".join(f"'{s}'" for s in FT_STATUSES)
        raise validation_error(
            [detail_item("enum", ["query", "status"], f"Input should be {expected}", status, {"expected": expected})]
        )
    model, suffix = q.get("model") or None, q.get("suffix") or None
    wandb_project, wandb_name = q.get("wandb_project") or None, q.get("wandb_name") or None
    key = ("ft", page, page_size, after, before, status, model, suffix, wandb_project, wandb_name)

    def wandb_matches(job: dict) -> bool:
        if wandb_project is None and wandb_name is None:
            return True
        return any(
            (wandb_project is None or i.get("project") == wandb_project)
            and (wandb_name is None or i.get("name") == wandb_name)
            for i in job["integrations"] or []
        )

    def build() -> bytes:
        items = sorted(state.account.ft_jobs.values(), key=lambda j: (-j["created_at"], j["id"]))
        items = [
            j
            for j in items
            if (after is None or j["created_at"] >= after)
            and (before is None or j["created_at"] < before)
            and (status is None or j["status"] == status)
            and (model is None or j["model"] == model)
            and (suffix is None or j["suffix"] == suffix)
            and wandb_matches(j)
        ]
        return orjson.dumps({"data": list(page_slice(items, page, page_size)), "object": "list", "total": len(items)})

    return json_response(state.account.cached(key, build))


async def get_ft_job(request: web.Request) -> web.Response:
    state = request.app[STATE]
    _fine_tuning_enabled(state)
    job_id = request.match_info["job_id"]
    job = state.account.ft_jobs.get(job_id)
    if job is None:
        raise not_found("No fine tuning job matches the given query.")
    return json_response({**job, **state.account.ft_details[job_id]})


# ---- agents ------------------------------------------------------------------------------------------
def _filtered_agents(account: Account, q) -> list[dict]:
    deployment_chat = validation.query_bool(q, "deployment_chat", None)
    sources = validation.query_enum_list(q, "sources", ("api", "playground", "agent_builder_v1"))
    name, search, agent_id = q.get("name") or None, q.get("search") or None, q.get("id") or None
    items = account.agents
    if deployment_chat is None and not sources and not name and not search and not agent_id:
        return items
    needle = search.lower() if search else None
    return [
        a
        for a in items
        if (deployment_chat is None or a["deployment_chat"] == deployment_chat)
        and (not sources or a["source"] in sources)
        and (name is None or a["name"] == name)
        and (agent_id is None or a["id"] == agent_id)
        and (needle is None or needle in a["name"].lower() or needle in a["id"])
    ]


async def list_agents(request: web.Request) -> web.Response:
    account = request.app[STATE].account
    q = request.query
    page = validation.query_int(q, "page", 0, ge=0)
    page_size = validation.query_int(q, "page_size", 20, ge=1, le=1000)
    items = _filtered_agents(account, q)
    return json_response(list(page_slice(items, page, page_size)))


async def list_agent_pages(request: web.Request) -> web.Response:
    account = request.app[STATE].account
    q = request.query
    page_size = validation.query_int(q, "page_size", 20, ge=1, le=1000)
    offset = decode_cursor(q.get("page_token"))
    if offset is None:
        raise bad_request("Invalid page_token.")
    items = _filtered_agents(account, q)
    chunk, next_token = cursor_page(items, offset, page_size)
    return json_response({"object": "list", "data": list(chunk), "next_page_token": next_token})


async def get_agent(request: web.Request) -> web.Response:
    agent_id = request.match_info["agent_id"]
    for agent in request.app[STATE].account.agents:
        if agent["id"] == agent_id:
            return json_response(agent)
    raise not_found("Agent not found")


# ---- inference ---------------------------------------------------------------------------------------
def _admit(request: web.Request):
    limits = request.get(LIMITS)
    return limits.admit if limits is not None else None


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _body(request)
    result = chat_completion(body, state.account.model, admit=_admit(request))
    streamed = bool(body.get("stream"))
    state.stats.add_chat(result.prompt_tokens, result.completion_tokens, streamed)
    return await _completion_response(request, result, streamed)


async def fim_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _body(request)
    result = fim_completion(body, state.account.model, admit=_admit(request))
    streamed = bool(body.get("stream"))
    state.stats.add_fim(result.prompt_tokens, result.completion_tokens, streamed)
    return await _completion_response(request, result, streamed)


async def _completion_response(request: web.Request, result: ChatResult, streamed: bool) -> web.StreamResponse:
    """A finished chat or FIM completion as one JSON body, or as server-sent events ending in [DONE]."""
    state = request.app[STATE]
    limits = request.get(LIMITS)
    if limits is not None:
        limits.charge_month(result.completion_tokens)
    if not streamed:
        await _token_latency(state, result.prompt_tokens + result.completion_tokens)
        return json_response(result.response)
    await _token_latency(state, result.prompt_tokens)
    # Headers must be complete before the stream starts, so the rate-limit headers are added here.
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            **(limits.headers() if limits is not None else {}),
        }
    )
    await response.prepare(request)
    events = stream_chunks(result)
    cut = len(events) // 2 if request.get(FAULT) == "truncate" else None
    for i, (chunk, tokens) in enumerate(events):
        if cut is not None and i == cut:
            # A stream cut short: the connection closes without the final chunk or [DONE].
            request[TRUNCATED] = True
            if request.transport is not None:
                request.transport.close()
            return response
        await _token_latency(state, tokens)
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    request.pop(FAULT, None)
    return response


async def create_embeddings(request: web.Request) -> web.Response:
    state = request.app[STATE]
    result = embeddings(await _body(request), state.account.model, admit=_admit(request))
    state.stats.add_embeddings(result.inputs, result.tokens)
    await _token_latency(state, result.tokens)
    return json_response(result.response)


async def moderations(request: web.Request) -> web.Response:
    state = request.app[STATE]
    chat = request.path.endswith("/chat/moderations")
    response, tokens = moderation(await _body(request), state.account.model, chat=chat, admit=_admit(request))
    state.stats.add_classifier("moderations", len(response["results"]), tokens)
    await _token_latency(state, tokens)
    return json_response(response)


async def classifications(request: web.Request) -> web.Response:
    state = request.app[STATE]
    chat = request.path.endswith("/chat/classifications")
    response, tokens = classification(await _body(request), state.account.model, chat=chat, admit=_admit(request))
    state.stats.add_classifier("classifications", len(response["results"]), tokens)
    await _token_latency(state, tokens)
    return json_response(response)


async def ocr_document(request: web.Request) -> web.Response:
    state = request.app[STATE]
    response, tokens = ocr(await _body(request), state.account.model, state.account, admit=_admit(request))
    state.stats.add_ocr(response["usage_info"]["pages_processed"], tokens)
    await _token_latency(state, tokens)
    return json_response(response)


# ---- admin -------------------------------------------------------------------------------------------
async def admin_stats(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].stats.snapshot())


async def admin_reset(request: web.Request) -> web.Response:
    request.app[STATE].stats.reset()
    return json_response({"ok": True})


async def admin_get_config(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].settings.knobs())


async def admin_config(request: web.Request) -> web.Response:
    body = await request.read()
    knobs = orjson.loads(body) if body else {}
    if not isinstance(knobs, dict):
        return json_response({"detail": "expected a JSON object of knobs"}, 400)
    try:
        return json_response(request.app[STATE].configure(**knobs))
    except (ValueError, TypeError) as exc:
        return json_response({"detail": str(exc)}, 400)


async def admin_advance(request: web.Request) -> web.Response:
    body = await request.read()
    payload = orjson.loads(body) if body else {}
    job_ids = payload.get("job_ids") if isinstance(payload, dict) else None
    done = request.app[STATE].runner.advance(job_ids)
    return json_response({"completed": done})


async def not_found_handler(request: web.Request) -> web.Response:
    raise not_found()


async def _shutdown(app: web.Application) -> None:
    app[STATE].runner.shutdown()


def create_app(api_key: str, settings: EmulatorSettings | None = None) -> web.Application:
    if not api_key:
        raise ValueError("an API key is required")
    settings = settings or EmulatorSettings()
    app = web.Application(middlewares=[emulator_middleware], client_max_size=MAX_UPLOAD_BYTES)
    app[STATE] = EmulatorState(api_key, settings)
    r = app.router
    r.add_get("/v1/models", list_models)
    r.add_get("/v1/models/{model_id}", get_model)
    r.add_get("/v1/files", list_files)
    r.add_post("/v1/files", upload_file)
    r.add_get("/v1/files/{file_id}", get_file)
    r.add_delete("/v1/files/{file_id}", delete_file)
    r.add_get("/v1/files/{file_id}/content", download_file)
    r.add_get("/v1/files/{file_id}/url", signed_url)
    r.add_get("/signed/files/{file_id}", signed_download)
    r.add_get("/v1/batch/jobs", list_batch_jobs)
    r.add_post("/v1/batch/jobs", create_batch_job)
    r.add_get("/v1/batch/jobs/{job_id}", get_batch_job)
    r.add_delete("/v1/batch/jobs/{job_id}", delete_batch_job)
    r.add_post("/v1/batch/jobs/{job_id}/cancel", cancel_batch_job)
    r.add_get("/v1/fine_tuning/jobs", list_ft_jobs)
    r.add_get("/v1/fine_tuning/jobs/{job_id}", get_ft_job)
    r.add_get("/v1/agents", list_agents)
    r.add_get("/v1/agents/pages", list_agent_pages)
    r.add_get("/v1/agents/{agent_id}", get_agent)
    r.add_post("/v1/chat/completions", chat_completions)
    r.add_post("/v1/embeddings", create_embeddings)
    r.add_post("/v1/moderations", moderations)
    r.add_post("/v1/chat/moderations", moderations)
    r.add_post("/v1/classifications", classifications)
    r.add_post("/v1/chat/classifications", classifications)
    r.add_post("/v1/ocr", ocr_document)
    r.add_post("/v1/fim/completions", fim_completions)
    r.add_get("/admin/stats", admin_stats)
    r.add_post("/admin/reset", admin_reset)
    r.add_get("/admin/config", admin_get_config)
    r.add_post("/admin/config", admin_config)
    r.add_post("/admin/advance", admin_advance)
    app.on_shutdown.append(_shutdown)
    return app


__all__ = ["create_app", "EmulatorState", "STATE", "API_ENDPOINTS"]
