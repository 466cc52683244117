"""Classification with a classifier model (/v1/classifications, or /v1/chat/classifications for a
conversation). A classifier answers, per record, a score per label for each of its targets; the
value stored is `{target: {"scores": {label: score}, "label": the top-scoring label}}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from destination_mistral.enrich.classifiers import ClassifierEnricher, scores_of
from destination_mistral.http.errors import InvalidAnswer


class ClassificationEnricher(ClassifierEnricher):
    def read_result(self, result: Any) -> dict[str, dict[str, Any]]:
        if not isinstance(result, Mapping) or not result:
            raise InvalidAnswer("a classification result without targets")
        targets = {}
        for target, answer in result.items():
            scores = scores_of(answer.get("scores") if isinstance(answer, Mapping) else None, "a classification target")
            # Ties go to the label listed first, as the answer orders them.
            targets[str(target)] = {"scores": scores, "label": max(scores, key=scores.__getitem__)}
        return targets
