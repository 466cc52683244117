"""Builders for the API bodies the source tests serve, in the shapes of Mistral's spec."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from airbyte_cdk.models import ConfiguredAirbyteCatalog, SyncMode
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.mock_http import HttpRequest, HttpResponse

API = "https://api.mistral.ai/v1"
KEY = "unit-test-key-0123456789"
CONFIG = {"api_key": KEY, "model": "mistral-small-latest", "base_url": "https://api.mistral.ai/v1/chat/completions"}


def request(path: str, **query: Any) -> HttpRequest:
    return HttpRequest(f"{API}/{path}", query_params={k: str(v) for k, v in query.items()} if query else None)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(json.dumps(body), status, headers or {})


def model_card(model_id: str, aliases: Iterable[str] = (), chat: bool = True) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": 1735689600,
        "owned_by": "mistralai",
        "type": "base",
        "capabilities": {"completion_chat": chat, "function_calling": chat},
        "aliases": list(aliases),
        "max_context_length": 131072,
    }


def file_item(index: int, created_at: int) -> dict[str, Any]:
    return {
        "id": f"00000000-0000-4000-8000-{index:012d}",
        "object": "file",
        "bytes": 100 + index,
        "created_at": created_at,
        "filename": f"f{index}.jsonl",
        "purpose": "batch",
        "sample_type": "batch_request",
        "source": "upload",
        "num_lines": 3,
        "mimetype": "application/jsonl",
    }


def files_page(items: list[dict[str, Any]], total: int) -> dict[str, Any]:
    return {"data": items, "object": "list", "total": total}


def batch_job(index: int, created_at: int, status: str = "SUCCESS") -> dict[str, Any]:
    return {
        "id": f"job-{index}",
        "object": "batch",
        "input_files": ["00000000-0000-4000-8000-000000000001"],
        "endpoint": "/v1/embeddings",
        "model": "mistral-embed",
        "errors": [],
        "status": status,
        "created_at": created_at,
        "total_requests": 10,
        "completed_requests": 10 if status == "SUCCESS" else 3,
        "succeeded_requests": 10,
        "failed_requests": 0,
    }


def agent(index: int, updated_at: str) -> dict[str, Any]:
    return {
        "id": f"ag_{index:04d}",
        "object": "agent",
        "name": f"agent {index}",
        "model": "mistral-small-latest",
        "version": 1,
        "versions": [1],
        "created_at": "2025-01-01T00:00:00Z",
        "updated_at": updated_at,
        "deployment_chat": False,
        "source": "api",
        "tools": [],
        "completion_args": {},
    }


def catalog(stream: str, mode: SyncMode = SyncMode.full_refresh) -> ConfiguredAirbyteCatalog:
    return CatalogBuilder().with_stream(stream, mode).build()


def mock_estimate(http_mocker, path: str, total: int | None) -> None:
    """The one-record request the source sends before a sync to learn a stream's `total`."""
    body = {"data": [], "object": "list", "total": total} if total is not None else {"detail": "Not Found"}
    http_mocker.get(request(path, page=0, page_size=1), json_response(body, 200 if total is not None else 404))
