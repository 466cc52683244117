"""Auth forms and error bodies of the emulator, shaped like the real gateway's."""

import re

import pytest
import requests


def _get(emulator, path, **kwargs):
    return requests.get(emulator.base_url + path, timeout=10, **kwargs)


def test_bearer_header_is_accepted(emulator, emulator_auth_headers):
    assert _get(emulator, "/v1/models", headers=emulator_auth_headers).status_code == 200


@pytest.mark.parametrize("param", ["api_token", "api_key", "key"])
def test_key_as_query_parameter_is_accepted_for_proxy_style_access(emulator, param):
    r = _get(emulator, "/v1/models", params={param: emulator.api_key})
    assert r.status_code == 200, f"?{param}= should authenticate, got {r.status_code}"


def test_missing_key_is_401_with_gateway_body(emulator):
    r = _get(emulator, "/v1/models")
    assert r.status_code == 401
    body = r.json()
    assert body["message"] == "No API key found in request"
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"]), "request_id should be 32 hex chars"


def test_wrong_key_is_401_unauthorized_and_never_echoed(emulator):
    r = _get(emulator, "/v1/models", headers={"Authorization": "Bearer wrong-key-123"})
    assert r.status_code == 401 and r.json()["message"] == "Unauthorized"
    assert "wrong-key-123" not in r.text, "a key must never be echoed back"


def test_unknown_route_is_fastapi_404(emulator, emulator_auth_headers):
    r = _get(emulator, "/v1/does-not-exist", headers=emulator_auth_headers)
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


def test_missing_fine_tuning_job_has_the_real_detail(emulator, emulator_auth_headers):
    r = _get(emulator, "/v1/fine_tuning/jobs/00000000-0000-4000-8000-000000000000", headers=emulator_auth_headers)
    assert r.status_code == 404
    assert r.json() == {"detail": "No fine tuning job matches the given query."}


def test_fine_tuning_switch_answers_404_like_the_current_api(fresh_emulator, emulator_auth_headers):
    assert _get(fresh_emulator, "/v1/fine_tuning/jobs", headers=emulator_auth_headers).status_code == 200
    fresh_emulator.configure(fine_tuning=False)
    r = _get(fresh_emulator, "/v1/fine_tuning/jobs", headers=emulator_auth_headers)
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


def test_models_list_has_aliases_as_own_entries_and_embedding_models_without_chat(emulator, emulator_auth_headers):
    cards = {c["id"]: c for c in _get(emulator, "/v1/models", headers=emulator_auth_headers).json()["data"]}
    assert "mistral-small-latest" in cards and "mistral-small-2603" in cards
    assert "mistral-small-2603" in cards["mistral-small-latest"]["aliases"]
    for embed in ("mistral-embed", "codestral-embed"):
        assert cards[embed]["capabilities"]["completion_chat"] is False, f"{embed} must not claim chat"
    fine_tuned = [c for c in cards.values() if c["type"] == "fine-tuned"]
    assert fine_tuned and all(c["job"] and c["root"] for c in fine_tuned), "succeeded FT jobs give FT model cards"


def test_model_retrieve_and_unknown_model(emulator, emulator_auth_headers):
    assert _get(emulator, "/v1/models/codestral-embed", headers=emulator_auth_headers).json()["id"] == "codestral-embed"
    assert _get(emulator, "/v1/models/nope", headers=emulator_auth_headers).status_code == 404
