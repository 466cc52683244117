"""The manifest uses only what the CDK in the venv supports without deprecation: building every
stream (as check, discover and read do) reports no deprecated field."""

from __future__ import annotations

import warnings

from source_mistral.source import SourceMistral
from unit_tests.source.mistral_responses import CONFIG


def test_building_the_streams_reports_no_deprecated_component_field():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = SourceMistral(config=CONFIG)
        streams = source.streams(source._config)
    assert {s.name for s in streams} >= {"models", "files", "batch_jobs", "batch_job_results"}
    assert [w.message for w in source.deprecation_warnings()] == []
    assert not [str(w.message) for w in caught if "deprecated" in str(w.message).lower()]
