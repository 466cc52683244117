"""The official `mistralai` SDK, used as a client of the emulator, parses every response."""

import json
import time

import pytest

mistralai = pytest.importorskip("mistralai")
from mistralai.client import Mistral  # noqa: E402
from mistralai.client import errors as sdk_errors  # noqa: E402


@pytest.fixture
def client(emulator):
    return Mistral(api_key=emulator.api_key, server_url=emulator.base_url)


def test_models_list_and_retrieve(client):
    models = client.models.list()
    ids = {m.id for m in models.data}
    assert {"mistral-small-latest", "mistral-embed", "codestral-embed"} <= ids
    assert any(m.type == "fine-tuned" for m in models.data), "FT cards must parse as FTModelCard"
    assert client.models.retrieve(model_id="mistral-embed").id == "mistral-embed"


def test_files_list_retrieve_upload_download(fresh_emulator):
    client = Mistral(api_key=fresh_emulator.api_key, server_url=fresh_emulator.base_url)
    listing = client.files.list(page=1, page_size=100)
    assert listing.total == 250 and len(listing.data) == 100
    assert client.files.retrieve(file_id=listing.data[0].id).deleted is False
    content = b'{"custom_id": "0", "body": {"input": "hello"}}\n'
    up = client.files.upload(file={"file_name": "in.jsonl", "content": content}, purpose="batch")
    assert up.num_lines == 1 and up.size_bytes == len(content)  # the SDK renames `bytes`
    assert client.files.download(file_id=up.id).read() == content
    assert client.files.get_signed_url(file_id=up.id).url.startswith(fresh_emulator.base_url)


def test_batch_jobs_list_get_create(fresh_emulator):
    client = Mistral(api_key=fresh_emulator.api_key, server_url=fresh_emulator.base_url)
    listing = client.batch.jobs.list(page_size=50, status=["RUNNING", "QUEUED"])
    assert all(j.status in ("RUNNING", "QUEUED") for j in listing.data)
    job = client.batch.jobs.create(
        requests=[{"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}}],
        endpoint="/v1/chat/completions",
        model="mistral-small-latest",
    )
    deadline = time.monotonic() + 10
    while job.status not in ("SUCCESS", "FAILED") and time.monotonic() < deadline:
        time.sleep(0.02)
        job = client.batch.jobs.get(job_id=job.id, inline=True)
    assert job.status == "SUCCESS" and job.outputs and job.outputs[0]["custom_id"] == "a"


def test_agents_list_and_pages(client):
    assert len(client.beta.agents.list(page=0, page_size=20)) == 20
    page = client.beta.agents.list_pages(page_size=20)
    seen = []
    while page is not None:
        seen.extend(page.result.data)
        page = page.next()
    assert len(seen) == 45, "the SDK's cursor pagination should walk every agent"


def test_chat_complete_text_and_json_schema(client):
    r = client.chat.complete(
        model="mistral-small-latest", messages=[{"role": "user", "content": "hello"}], random_seed=3
    )
    assert r.choices[0].message.content and r.usage.total_tokens > 0
    schema = {
        "type": "object",
        "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]}},
        "required": ["sentiment"],
        "additionalProperties": False,
    }
    r = client.chat.complete(
        model="mistral-small-latest",
        messages=[{"role": "user", "content": "I love it"}],
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema, "strict": True}},
    )
    assert json.loads(r.choices[0].message.content) == {"sentiment": "positive"}


def test_chat_stream(client):
    events = list(client.chat.stream(model="mistral-small-latest", messages=[{"role": "user", "content": "hello"}]))
    assert events[0].data.choices[0].delta.role == "assistant"
    assert events[-1].data.usage.completion_tokens > 0


def test_embeddings_create(client):
    r = client.embeddings.create(model="codestral-embed", inputs=["def f(): pass"], output_dimension=512)
    assert len(r.data[0].embedding) == 512


def test_classifiers_moderate(client):
    r = client.classifiers.moderate(model="mistral-moderation-latest", inputs=["I will hurt you"])
    assert r.results[0].categories["violence_and_threats"] is True


def test_errors_surface_with_status_codes(client, emulator):
    bad = Mistral(api_key="wrong", server_url=emulator.base_url)
    with pytest.raises(sdk_errors.SDKError) as info:
        bad.models.list()
    assert info.value.status_code == 401
    with pytest.raises(sdk_errors.SDKError) as info:
        client.chat.complete(model="nope", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 400
