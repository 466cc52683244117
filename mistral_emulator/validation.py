"""Request-body checks that answer like the real FastAPI/pydantic service does: 422 with a `detail` list
of `{type, loc, msg, input}` items. Only the fields the emulator acts on are checked deeply; the rest
are checked for presence in the allowed set, since `additionalProperties: false` is what clients hit
most (sending an OpenAI-only field such as `max_completion_tokens`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC
from typing import Any

import orjson

from .errors import ApiError, detail_item, validation_error

CHAT_FIELDS = frozenset(
    "model temperature top_p max_tokens stream stop random_seed metadata messages response_format tools "
    "tool_choice presence_penalty frequency_penalty n prediction parallel_tool_calls reasoning_effort "
    "prompt_mode guardrails prompt_cache_key service_tier safe_prompt".split()
)
EMBEDDING_FIELDS = frozenset("model metadata input output_dimension output_dtype encoding_format".split())
# ClassificationRequest: the body of both /v1/moderations and /v1/classifications.
CLASSIFICATION_FIELDS = frozenset("model metadata input".split())
# ChatModerationRequest and ChatClassificationRequest.
CHAT_CLASSIFICATION_FIELDS = frozenset("model input".split())
INSTRUCT_REQUEST_FIELDS = frozenset({"messages"})
FIM_FIELDS = frozenset(
    "model temperature top_p max_tokens stream stop random_seed metadata prompt suffix min_tokens "
    "prompt_cache_key".split()
)
MESSAGE_FIELDS = {
    "system": frozenset({"role", "content"}),
    "user": frozenset({"role", "content"}),
    "assistant": frozenset({"role", "content", "tool_calls", "prefix"}),
    "tool": frozenset({"role", "content", "tool_call_id", "name"}),
}
RESPONSE_FORMAT_FIELDS = frozenset({"type", "json_schema"})
JSON_SCHEMA_FIELDS = frozenset({"name", "description", "schema", "strict"})
EMBEDDING_DTYPES = ("float", "int8", "uint8", "binary", "ubinary")
ENCODING_FORMATS = ("float", "base64")


def _quoted(options: Iterable[str]) -> str:
    opts = [f"'{o}'" for o in options]
    return opts[0] if len(opts) == 1 else ", ".join(opts[:-1]) + " or " + opts[-1]


class Checker:
    def __init__(self) -> None:
        self.errors: list[dict] = []

    def add(self, type_: str, loc: list, msg: str, input_: Any, ctx: dict | None = None) -> None:
        self.errors.append(detail_item(type_, loc, msg, input_, ctx))

    def raise_if_any(self) -> None:
        if self.errors:
            raise validation_error(self.errors)

    def fields(self, obj: dict, allowed: frozenset, required: Iterable[str], loc: list) -> None:
        for name in required:
            if name not in obj:
                self.add("missing", loc + [name], "Field required", obj)
        for name, value in obj.items():
            if name not in allowed:
                self.add("extra_forbidden", loc + [name], "Extra inputs are not permitted", value)

    def dict_(self, value: Any, loc: list) -> bool:
        if not isinstance(value, dict):
            self.add(
                "model_attributes_type",
                loc,
                "Input should be a valid dictionary or object to extract fields from",
                value,
            )
            return False
        return True

    def string(self, value: Any, loc: list, nullable: bool = False) -> bool:
        if value is None and nullable:
            return True
        if not isinstance(value, str):
            self.add("string_type", loc, "Input should be a valid string", value)
            return False
        return True

    def boolean(self, value: Any, loc: list, nullable: bool = False) -> None:
        if value is None and nullable:
            return
        if not isinstance(value, bool):
            self.add("bool_type", loc, "Input should be a valid boolean", value)

    def number(
        self, value: Any, loc: list, *, integer: bool = False, ge=None, le=None, gt=None, nullable: bool = True
    ) -> None:
        if value is None and nullable:
            return
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (integer and isinstance(value, float) and not value.is_integer())
        ):
            if integer:
                self.add("int_type", loc, "Input should be a valid integer", value)
            else:
                self.add("float_type", loc, "Input should be a valid number", value)
            return
        if ge is not None and value < ge:
            self.add("greater_than_equal", loc, f"Input should be greater than or equal to {ge}", value, {"ge": ge})
        if gt is not None and value <= gt:
            self.add("greater_than", loc, f"Input should be greater than {gt}", value, {"gt": gt})
        if le is not None and value > le:
            self.add("less_than_equal", loc, f"Input should be less than or equal to {le}", value, {"le": le})

    def metadata(self, body: dict, loc: list) -> None:
        value = body.get("metadata")
        if value is not None:
            self.dict_(value, loc + ["metadata"])

    def text_input(self, body: dict, loc: list) -> None:
        """`input: str | [str]`, with the errors pydantic gives for each branch of the union."""
        if "input" not in body:
            return
        value = body["input"]
        if isinstance(value, list):
            for i, item in enumerate(value):
                self.string(item, loc + ["input", "list[str]", i])
        elif not isinstance(value, str):
            self.add("string_type", loc + ["input", "str"], "Input should be a valid string", value)
            self.add("list_type", loc + ["input", "list[str]"], "Input should be a valid list", value)

    def stop(self, body: dict, loc: list) -> None:
        stop = body.get("stop")
        if (
            stop is not None
            and not isinstance(stop, str)
            and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
        ):
            self.add("string_type", loc + ["stop", "str"], "Input should be a valid string", stop)

    def sampling(self, body: dict, loc: list) -> None:
        """The sampling fields chat and FIM completions share."""
        self.number(body.get("temperature"), loc + ["temperature"], ge=0, le=1.5)
        self.number(body.get("top_p"), loc + ["top_p"], gt=0, le=1)
        self.number(body.get("max_tokens"), loc + ["max_tokens"], integer=True, ge=0)
        self.number(body.get("random_seed"), loc + ["random_seed"], integer=True, ge=0)
        if "stream" in body:
            self.boolean(body["stream"], loc + ["stream"])
        self.stop(body, loc)
        self.metadata(body, loc)

    def response_format(self, rf: Any, loc: list) -> None:
        """A ResponseFormat object (or null): chat's `response_format`, OCR's annotation formats."""
        if rf is None or not self.dict_(rf, loc):
            return
        self.fields(rf, RESPONSE_FORMAT_FIELDS, (), loc)
        self.enum(rf.get("type", "text"), ("text", "json_object", "json_schema"), loc + ["type"])
        js = rf.get("json_schema")
        if js is not None and self.dict_(js, loc + ["json_schema"]):
            self.fields(js, JSON_SCHEMA_FIELDS, ("name", "schema"), loc + ["json_schema"])
            if "schema" in js:
                self.dict_(js["schema"], loc + ["json_schema", "schema"])

    def enum(self, value: Any, options: tuple, loc: list) -> None:
        if value not in options:
            expected = _quoted(options)
            self.add("enum", loc, f"Input should be {expected}", value, {"expected": expected})


def parse_json_body(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise validation_error(
            [detail_item("json_invalid", ["body", exc.pos], "JSON decode error", {}, {"error": exc.msg})]
        ) from exc


def require_object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise validation_error(
            [
                detail_item(
                    "model_attributes_type",
                    ["body"],
                    "Input should be a valid dictionary or object to extract fields from",
                    body,
                )
            ]
        )
    return body


def check_messages(c: Checker, messages: Any, loc: list) -> None:
    if not isinstance(messages, list):
        c.add("list_type", loc, "Input should be a valid list", messages)
        return
    tags = tuple(sorted(MESSAGE_FIELDS))
    for i, message in enumerate(messages):
        mloc = loc + [i]
        if not c.dict_(message, mloc):
            continue
        if "role" not in message:
            c.add(
                "union_tag_not_found",
                mloc,
                "Unable to extract tag using discriminator 'role'",
                message,
                {"discriminator": "'role'"},
            )
            continue
        role = message["role"]
        if role not in MESSAGE_FIELDS:
            expected = ", ".join(f"'{t}'" for t in tags)
            c.add(
                "union_tag_invalid",
                mloc,
                f"Input tag '{role}' found using 'role' does not match any of the expected tags: {expected}",
                message,
                {"discriminator": "'role'", "tag": str(role), "expected_tags": expected},
            )
            continue
        required = ("content",) if role != "assistant" else ()
        c.fields(message, MESSAGE_FIELDS[role], required, mloc + [role])
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            c.add("string_type", mloc + [role, "content", "str"], "Input should be a valid string", content)


def check_chat(body: dict) -> None:
    c = Checker()
    c.fields(body, CHAT_FIELDS, ("model", "messages"), ["body"])
    if "model" in body:
        c.string(body["model"], ["body", "model"])
    if "messages" in body:
        check_messages(c, body["messages"], ["body", "messages"])
    c.sampling(body, ["body"])
    c.number(body.get("n"), ["body", "n"], integer=True, ge=1)
    c.number(body.get("presence_penalty"), ["body", "presence_penalty"], ge=-2, le=2)
    c.number(body.get("frequency_penalty"), ["body", "frequency_penalty"], ge=-2, le=2)
    c.response_format(body.get("response_format"), ["body", "response_format"])
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            c.add("list_type", ["body", "tools"], "Input should be a valid list", tools)
        else:
            for i, tool in enumerate(tools):
                if c.dict_(tool, ["body", "tools", i]) and tool.get("type", "function") == "function":
                    fn = tool.get("function")
                    if c.dict_(fn, ["body", "tools", i, "function"]):
                        c.fields(
                            fn,
                            frozenset({"name", "description", "strict", "parameters"}),
                            ("name", "parameters"),
                            ["body", "tools", i, "function"],
                        )
    c.raise_if_any()


def check_embeddings(body: dict) -> None:
    c = Checker()
    c.fields(body, EMBEDDING_FIELDS, ("model", "input"), ["body"])
    if "model" in body:
        c.string(body["model"], ["body", "model"])
    c.text_input(body, ["body"])
    c.metadata(body, ["body"])
    c.number(body.get("output_dimension"), ["body", "output_dimension"], integer=True, gt=0)
    if "output_dtype" in body:
        c.enum(body["output_dtype"], EMBEDDING_DTYPES, ["body", "output_dtype"])
    if "encoding_format" in body:
        c.enum(body["encoding_format"], ENCODING_FORMATS, ["body", "encoding_format"])
    c.raise_if_any()


def check_classification(body: dict, chat: bool) -> None:
    """The bodies of /v1/moderations and /v1/classifications (ClassificationRequest), or with `chat` of
    /v1/chat/moderations (ChatModerationRequest: a conversation or a list of them)."""
    c = Checker()
    c.fields(body, CHAT_CLASSIFICATION_FIELDS if chat else CLASSIFICATION_FIELDS, ("model", "input"), ["body"])
    if "model" in body:
        c.string(body["model"], ["body", "model"])
    if not chat:
        c.text_input(body, ["body"])
        c.metadata(body, ["body"])
    elif "input" in body:
        value = body["input"]
        if not isinstance(value, list):
            c.add("list_type", ["body", "input"], "Input should be a valid list", value)
        elif value and all(isinstance(v, list) for v in value):
            for i, conv in enumerate(value):
                check_messages(c, conv, ["body", "input", i])
        else:
            check_messages(c, value, ["body", "input"])
    c.raise_if_any()


def check_chat_classification(body: dict) -> None:
    """ChatClassificationRequest: `input` is one InstructRequest ({messages}) or a list of them."""
    c = Checker()
    c.fields(body, CHAT_CLASSIFICATION_FIELDS, ("model", "input"), ["body"])
    if "model" in body:
        c.string(body["model"], ["body", "model"])
    value = body.get("input")
    if "input" in body:
        requests = value if isinstance(value, list) else [value]
        for i, item in enumerate(requests):
            loc = ["body", "input", i] if isinstance(value, list) else ["body", "input"]
            if c.dict_(item, loc):
                c.fields(item, INSTRUCT_REQUEST_FIELDS, ("messages",), loc)
                if "messages" in item:
                    check_messages(c, item["messages"], loc + ["messages"])
    c.raise_if_any()


def check_fim(body: dict) -> None:
    c = Checker()
    c.fields(body, FIM_FIELDS, ("model", "prompt"), ["body"])
    if "model" in body:
        c.string(body["model"], ["body", "model"])
    if "prompt" in body:
        c.string(body["prompt"], ["body", "prompt"])
    c.string(body.get("suffix"), ["body", "suffix"], nullable=True)
    c.string(body.get("prompt_cache_key"), ["body", "prompt_cache_key"], nullable=True)
    c.sampling(body, ["body"])
    c.number(body.get("min_tokens"), ["body", "min_tokens"], integer=True, ge=0)
    c.raise_if_any()


def query_int(query, name: str, default: int, *, ge: int | None = None, le: int | None = None) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation_error(
            [
                detail_item(
                    "int_parsing",
                    ["query", name],
                    "Input should be a valid integer, unable to parse string as an integer",
                    raw,
                )
            ]
        ) from None
    if ge is not None and value < ge:
        raise validation_error(
            [
                detail_item(
                    "greater_than_equal",
                    ["query", name],
                    f"Input should be greater than or equal to {ge}",
                    raw,
                    {"ge": ge},
                )
            ]
        )
    if le is not None and value > le:
        raise validation_error(
            [
                detail_item(
                    "less_than_equal", ["query", name], f"Input should be less than or equal to {le}", raw, {"le": le}
                )
            ]
        )
    return value


def query_bool(query, name: str, default: bool | None) -> bool | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.lower()
    if lowered in ("true", "1", "yes", "on", "t", "y"):
        return True
    if lowered in ("false", "0", "no", "off", "f", "n"):
        return False
    raise validation_error(
        [
            detail_item(
                "bool_parsing", ["query", name], "Input should be a valid boolean, unable to interpret input", raw
            )
        ]
    )


def query_datetime(query, name: str) -> float | None:
    """Parses an ISO-8601 date-time (naive values are taken as UTC) into unix seconds."""
    from datetime import datetime

    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace(" ", "+") if raw.count(" ") == 1 and "T" in raw else raw)
    except ValueError:
        raise validation_error(
            [
                detail_item(
                    "datetime_from_date_parsing",
                    ["query", name],
                    "Input should be a valid datetime or date, invalid character in year",
                    raw,
                )
            ]
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def query_enum_list(query, name: str, options: tuple) -> list[str] | None:
    values = query.getall(name, [])
    if not values:
        return None
    out = []
    for i, v in enumerate(values):
        if v not in options:
            expected = _quoted(options)
            raise validation_error(
                [detail_item("enum", ["query", name, i], f"Input should be {expected}", v, {"expected": expected})]
            )
        out.append(v)
    return out


__all__ = ["ApiError"]
