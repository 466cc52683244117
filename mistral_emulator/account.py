"""The in-memory account: models, files, batch jobs, agents and fine-tuning jobs. Seeded data is
generated once from the seed (no wall clock involved, so two runs with one seed serve identical lists);
file contents of seeded files are synthesised on demand, so 20,000 files start in a fraction of a
second."""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from .catalogue import FINE_TUNED_FAMILY, Model, base_models, fine_tuned_classifiers
from .settings import EmulatorSettings

# Seeded timestamps end here (2026-01-01T00:00:00Z); anything created through the API is newer.
SEED_ANCHOR = 1_767_225_600
SEED_SPAN = 2 * 365 * 86_400

BATCH_STATUSES = ("QUEUED", "RUNNING", "SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLATION_REQUESTED", "CANCELLED")
FT_STATUSES = (
    "QUEUED",
    "STARTED",
    "VALIDATING",
    "VALIDATED",
    "RUNNING",
    "FAILED_VALIDATION",
    "FAILED",
    "SUCCESS",
    "CANCELLED",
    "CANCELLATION_REQUESTED",
)
_WORDS = (
    "alpha atlas breeze cedar delta ember falcon garnet harbor iris jade kestrel lumen maple nova onyx "
    "prism quartz raven sierra tango umber vega willow xenon yarrow zephyr"
).split()
_QUESTIONS = (
    "What is the best French cheese?",
    "Summarise the causes of the French Revolution in one paragraph.",
    "Write a haiku about the sea.",
    "Explain vector databases to a data engineer.",
    "Translate 'good morning' into Italian.",
    "List three uses of embeddings in search.",
)
_CHAT_MODELS = ("mistral-small-latest", "mistral-medium-latest", "mistral-large-latest", "ministral-8b-latest")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class SeededContent:
    """Recipe for a seeded file's bytes: every line has the same length, so `bytes` is known without
    building the content."""

    def __init__(self, kind: str, file_index: int, num_lines: int, size: int = 0):
        self.kind = kind
        self.file_index = file_index
        self.num_lines = num_lines
        self.size = size

    def template(self) -> str:
        q = _QUESTIONS[self.file_index % len(_QUESTIONS)]
        qj = orjson.dumps(q).decode()
        if self.kind == "batch_request":
            return (
                '{"custom_id": "%s", "body": {"max_tokens": 64, "messages": [{"role": "user", "content": ' + qj + "}]}}"
            )
        if self.kind == "instruct":
            a = orjson.dumps(f"A short answer to: {q}").decode()
            return (
                '{"messages": [{"role": "user", "content": '
                + qj
                + '}, {"role": "assistant", "content": '
                + a
                + '}], "line": "%s"}'
            )
        if self.kind == "batch_result":
            return (
                f'{{"id": "batch-{self.file_index:05d}-%s", "custom_id": "%s", '
                '"response": {"status_code": 200, "body": '
                '{"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", '
                '"content": "ok"}, "finish_reason": "stop"}]}}, "error": null}'
            )
        if self.kind == "batch_error":
            return (
                f'{{"id": "batch-{self.file_index:05d}-%s", "custom_id": "%s", '
                '"response": {"status_code": 400, "body": '
                '{"object": "error", "message": "Invalid request", "type": "invalid_request_error", '
                '"param": null, "code": null}}, "error": {"message": "Invalid request", "code": 400}}'
            )
        raise ValueError(self.kind)

    def line_length(self) -> int:
        t = self.template()
        return len((t.replace("%s", "0000000")).encode()) + 1

    def nbytes(self) -> int:
        return self.size if self.kind == "pdf" else self.num_lines * self.line_length()

    def render(self) -> bytes:
        if self.kind == "pdf":
            head = b"%PDF-1.4\n% seeded document\n"
            filler = hashlib.sha256(str(self.file_index).encode()).hexdigest().encode() * (self.size // 64 + 1)
            return (head + filler)[: self.size]
        t = self.template()
        lines = []
        # A request ends in either the output or the error file of its job, never both: error lines
        # take custom_ids from another range (of the same width, so line lengths stay fixed).
        offset = 5_000_000 if self.kind == "batch_error" else 0
        for i in range(self.num_lines):
            cid = f"{i + offset:07d}"
            lines.append(t.replace("%s", cid) + "\n")
        return "".join(lines).encode()


class Account:
    def __init__(self, settings: EmulatorSettings):
        self.settings = settings
        self.rng = random.Random(settings.seed)
        # Bumped on every change so that cached list pages are never stale.
        self.version = 0
        self.base_models = {m.id: m for m in base_models()}
        self.files: dict[str, dict] = {}
        self.file_content: dict[str, bytes] = {}
        self.seeded_content: dict[str, SeededContent] = {}
        self.batch_jobs: dict[str, dict] = {}
        self.agents: list[dict] = []
        self.ft_jobs: dict[str, dict] = {}
        self.ft_details: dict[str, dict] = {}
        self._files_sorted: list[dict] | None = None
        self._jobs_sorted: list[dict] | None = None
        self._page_cache: dict[Any, bytes] = {}
        self._seed_files(settings.files)
        self._seed_batch_jobs(settings.batch_jobs)
        self._seed_agents(settings.agents)
        self._seed_ft_jobs(settings.fine_tuning_jobs)
        self.ft_models = self._fine_tuned_models()

    # ---- change tracking -------------------------------------------------------------------------
    def touch(self) -> None:
        self.version += 1
        self._files_sorted = None
        self._jobs_sorted = None
        self._page_cache.clear()

    def cached(self, key: Any, build: Callable[[], bytes]) -> bytes:
        full_key = (self.version, key)
        hit = self._page_cache.get(full_key)
        if hit is None:
            if len(self._page_cache) > 4096:
                self._page_cache.clear()
            hit = self._page_cache[full_key] = build()
        return hit

    # ---- models --------------------------------------------------------------------------------------
    def model(self, model_id: str) -> Model | None:
        return self.base_models.get(model_id) or self.ft_models.get(model_id)

    def model_cards(self) -> list[dict]:
        return [m.card() for m in self.base_models.values()] + [m.card() for m in self.ft_models.values()]

    def _fine_tuned_models(self) -> dict[str, Model]:
        out = {m.id: m for m in fine_tuned_classifiers()}
        for job in self.ft_jobs.values():
            if job["status"] == "SUCCESS" and job["fine_tuned_model"] and job["job_type"] == "completion":
                out[job["fine_tuned_model"]] = Model(
                    job["fine_tuned_model"], FINE_TUNED_FAMILY, (), job=job["id"], root=job["model"]
                )
        return out

    # ---- files ---------------------------------------------------------------------------------------
    def _seed_files(self, count: int) -> None:
        rng = random.Random(self.settings.seed * 7919 + 1)
        stamps = sorted((SEED_ANCHOR - rng.randrange(SEED_SPAN) for _ in range(count)), reverse=True)
        for i, created in enumerate(stamps):
            roll = rng.random()
            if roll < 0.35:
                purpose, sample, kind, ext = "fine-tune", "instruct", "instruct", "jsonl"
            elif roll < 0.65:
                purpose, sample, kind, ext = "batch", "batch_request", "batch_request", "jsonl"
            elif roll < 0.8:
                purpose, sample, kind, ext = "batch", "batch_result", "batch_result", "jsonl"
            elif roll < 0.88:
                purpose, sample, kind, ext = "batch", "batch_error", "batch_error", "jsonl"
            else:
                purpose, sample, kind, ext = "ocr", "instruct", "pdf", "pdf"
            num_lines = rng.randint(1, 40) if kind != "pdf" else None
            recipe = SeededContent(kind, i, num_lines or 0, rng.randint(2_000, 200_000))
            file_id = _uuid(rng)
            source = "mistral" if sample in ("batch_result", "batch_error") else "upload"
            self.files[file_id] = {
                "id": file_id,
                "object": "file",
                "bytes": recipe.nbytes(),
                "created_at": created,
                "filename": f"{_WORDS[i % len(_WORDS)]}_{i:05d}.{ext}",
                "purpose": purpose,
                "sample_type": sample,
                "num_lines": num_lines,
                "mimetype": "application/pdf" if kind == "pdf" else "application/jsonl",
                "source": source,
                "signature": hashlib.blake2b(file_id.encode(), digest_size=8).hexdigest(),
                "expires_at": None,
                "visibility": "workspace",
            }
            self.seeded_content[file_id] = recipe

    def sorted_files(self) -> list[dict]:
        if self._files_sorted is None:
            self._files_sorted = sorted(self.files.values(), key=lambda f: (-f["created_at"], f["id"]))
        return self._files_sorted

    def content_of(self, file_id: str) -> bytes | None:
        if file_id in self.file_content:
            return self.file_content[file_id]
        recipe = self.seeded_content.get(file_id)
        return recipe.render() if recipe is not None else None

    def add_file(
        self,
        content: bytes,
        filename: str,
        purpose: str,
        *,
        sample_type: str | None = None,
        mimetype: str | None = None,
        source: str = "upload",
        expiry: int | None = None,
        visibility: str | None = "workspace",
    ) -> dict:
        file_id = str(uuid.uuid4())
        now = int(time.time())
        is_jsonl = filename.endswith(".jsonl") or (mimetype or "").endswith("jsonl")
        if sample_type is None:
            sample_type = "batch_request" if purpose == "batch" else "instruct"
        if mimetype is None or mimetype == "application/octet-stream":
            mimetype = "application/jsonl" if is_jsonl else (mimetype or "application/octet-stream")
        num_lines = None
        if is_jsonl:
            num_lines = sum(1 for line in content.splitlines() if line.strip())
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": now,
            "filename": filename,
            "purpose": purpose,
            "sample_type": sample_type,
            "num_lines": num_lines,
            "mimetype": mimetype,
            "source": source,
            "signature": hashlib.blake2b(content, digest_size=8).hexdigest(),
            # `expiry` is taken as hours from now (the unit is unstated in the spec).
            "expires_at": now + int(expiry) * 3600 if expiry else None,
            "visibility": visibility,
        }
        self.files[file_id] = meta
        self.file_content[file_id] = content
        self.touch()
        return meta

    def delete_file(self, file_id: str) -> bool:
        if self.files.pop(file_id, None) is None:
            return False
        self.file_content.pop(file_id, None)
        self.seeded_content.pop(file_id, None)
        self.touch()
        return True

    # ---- batch jobs ----------------------------------------------------------------------------------
    def _seed_batch_jobs(self, count: int) -> None:
        rng = random.Random(self.settings.seed * 7919 + 2)
        request_files = [f for f in self.files.values() if f["sample_type"] == "batch_request"]
        result_files = [f["id"] for f in self.files.values() if f["sample_type"] == "batch_result"]
        error_files = [f["id"] for f in self.files.values() if f["sample_type"] == "batch_error"]
        stamps = sorted((SEED_ANCHOR - rng.randrange(SEED_SPAN) for _ in range(count)), reverse=True)
        recent = max(1, count // 4)
        for i, created in enumerate(stamps):
            if i < recent and rng.random() < 0.6:
                status = rng.choice(("RUNNING", "RUNNING", "QUEUED"))
            else:
                status = rng.choices(("SUCCESS", "FAILED", "CANCELLED", "TIMEOUT_EXCEEDED"), (80, 8, 8, 4))[0]
            endpoint = rng.choices(("/v1/chat/completions", "/v1/embeddings", "/v1/moderations"), (70, 25, 5))[0]
            model = {"/v1/embeddings": "mistral-embed", "/v1/moderations": "mistral-moderation-latest"}.get(
                endpoint, rng.choice(_CHAT_MODELS)
            )
            if request_files and endpoint == "/v1/chat/completions":
                source = rng.choice(request_files)
                input_file, total = source["id"], source["num_lines"]
            else:
                input_file, total = _uuid(rng), rng.randint(1, 400)
            job = {
                "id": _uuid(rng),
                "object": "batch",
                "input_files": [input_file],
                "metadata": {"job_type": "seeded", "team": _WORDS[i % len(_WORDS)]} if rng.random() < 0.5 else None,
                "endpoint": endpoint,
                "model": model,
                "agent_id": None,
                "output_file": None,
                "error_file": None,
                "errors": [],
                "outputs": None,
                "status": status,
                "created_at": created,
                "total_requests": total,
                "completed_requests": 0,
                "succeeded_requests": 0,
                "failed_requests": 0,
                "started_at": None,
                "completed_at": None,
            }
            if status != "QUEUED":
                job["started_at"] = created + rng.randint(5, 600)
            if status == "RUNNING":
                done = rng.randint(0, total - 1) if total > 1 else 0
                job.update(completed_requests=done, succeeded_requests=done)
            elif status in ("SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"):
                failed = 0 if status == "SUCCESS" and rng.random() < 0.8 else rng.randint(0, total)
                done = total if status in ("SUCCESS", "FAILED") else rng.randint(0, total)
                failed = min(failed, done)
                job.update(
                    completed_requests=done,
                    succeeded_requests=done - failed,
                    failed_requests=failed,
                    completed_at=job["started_at"] + rng.randint(60, 86_400),
                )
                if done - failed and result_files:
                    job["output_file"] = rng.choice(result_files)
                if failed:
                    job["errors"] = [{"message": "Invalid request body", "count": failed}]
                    if error_files:
                        job["error_file"] = rng.choice(error_files)
            self.batch_jobs[job["id"]] = job

    def sorted_jobs(self) -> list[dict]:
        if self._jobs_sorted is None:
            self._jobs_sorted = sorted(self.batch_jobs.values(), key=lambda j: (-j["created_at"], j["id"]))
        return self._jobs_sorted

    # ---- agents -------------------------------------------------------------------------------------
    def _seed_agents(self, count: int) -> None:
        rng = random.Random(self.settings.seed * 7919 + 3)
        stamps = sorted((SEED_ANCHOR - rng.randrange(SEED_SPAN) for _ in range(count)), reverse=True)
        for i, created in enumerate(stamps):
            version = rng.randint(0, 3)
            updated = created + version * rng.randint(60, 86_400)
            tools: list[dict] = []
            if rng.random() < 0.4:
                tools.append({"type": "web_search"})
            if rng.random() < 0.3:
                tools.append(
                    {
                        "type": "function",
                        "function": {
                            "name": "lookup_order",
                            "description": "Find an order by id",
                            "strict": False,
                            "parameters": {
                                "type": "object",
                                "properties": {"order_id": {"type": "string"}},
                                "required": ["order_id"],
                            },
                        },
                    }
                )
            name = f"{_WORDS[i % len(_WORDS)].capitalize()} assistant {i}"
            self.agents.append(
                {
                    "instructions": f"You are {name}. Answer briefly.",
                    "tools": tools,
                    "completion_args": {"temperature": 0.3} if rng.random() < 0.5 else {},
                    "guardrails": None,
                    "model": rng.choice(_CHAT_MODELS),
                    "name": name,
                    "description": f"Seeded agent number {i}",
                    "handoffs": None,
                    "metadata": {"owner": _WORDS[(i * 7) % len(_WORDS)]} if rng.random() < 0.3 else None,
                    "object": "agent",
                    "id": "ag_" + uuid.UUID(int=rng.getrandbits(128), version=4).hex,
                    "version": version,
                    "versions": list(range(version + 1)),
                    "created_at": iso(created),
                    "updated_at": iso(updated),
                    "deployment_chat": rng.random() < 0.3,
                    "source": rng.choices(("api", "playground", "agent_builder_v1"), (60, 30, 10))[0],
                    "version_message": None,
                }
            )

    # ---- fine-tuning jobs -----------------------------------------------------------------------------
    def _seed_ft_jobs(self, count: int) -> None:
        rng = random.Random(self.settings.seed * 7919 + 4)
        training = [f["id"] for f in self.files.values() if f["purpose"] == "fine-tune"]
        stamps = sorted((SEED_ANCHOR - rng.randrange(SEED_SPAN) for _ in range(count)), reverse=True)
        for i, created in enumerate(stamps):
            job_type = "classifier" if rng.random() < 0.2 else "completion"
            status = rng.choices(FT_STATUSES, (4, 2, 2, 2, 6, 4, 8, 60, 8, 4))[0]
            model = rng.choice(("open-mistral-7b", "mistral-small-latest", "codestral-latest", "open-mistral-nemo"))
            job_id = _uuid(rng)
            modified = created + rng.randint(60, 7 * 86_400)
            suffix = _WORDS[i % len(_WORDS)] if rng.random() < 0.5 else None
            day = datetime.fromtimestamp(created, tz=UTC).strftime("%Y%m%d")
            hyper: dict = {
                "training_steps": rng.choice((10, 50, 100)),
                "learning_rate": 0.0001,
                "weight_decay": 0.1,
                "warmup_fraction": 0.05,
                "epochs": None,
                "seq_len": None,
            }
            if job_type == "completion":
                hyper["fim_ratio"] = 0.9
            train_tokens = rng.randint(10_000, 5_000_000)
            job = {
                "id": job_id,
                "auto_start": rng.random() < 0.7,
                "model": model,
                "status": status,
                "created_at": created,
                "modified_at": modified,
                "training_files": [rng.choice(training)] if training else [_uuid(rng)],
                "validation_files": [],
                "object": "job",
                "fine_tuned_model": (f"ft:{model}:{job_id[:8]}:{day}:{job_id[-8:]}" if status == "SUCCESS" else None),
                "suffix": suffix,
                "integrations": (
                    [{"type": "wandb", "project": "emulator", "name": None, "run_name": f"run-{i}", "url": None}]
                    if rng.random() < 0.2
                    else None
                ),
                "trained_tokens": train_tokens if status == "SUCCESS" else None,
                "metadata": {
                    "expected_duration_seconds": rng.randint(60, 7200),
                    "cost": round(train_tokens * 1e-6, 4),
                    "cost_currency": "EUR",
                    "train_tokens_per_step": 131_072,
                    "train_tokens": train_tokens,
                    "data_tokens": train_tokens // 2,
                    "estimated_start_time": None,
                },
                "job_type": job_type,
                "hyperparameters": hyper,
            }
            if job_type == "completion":
                job["repositories"] = []
            self.ft_jobs[job_id] = job
            details: dict = {
                "events": [
                    {"name": "status-updated", "data": {"status": "QUEUED"}, "created_at": created},
                    {"name": "status-updated", "data": {"status": status}, "created_at": modified},
                ],
                "checkpoints": (
                    [
                        {
                            "metrics": {"train_loss": 1.2, "valid_loss": 1.3, "valid_mean_token_accuracy": 0.7},
                            "step_number": hyper["training_steps"],
                            "created_at": modified,
                        }
                    ]
                    if status == "SUCCESS"
                    else []
                ),
            }
            if job_type == "classifier":
                details["classifier_targets"] = [
                    {
                        "name": "intent",
                        "labels": ["billing", "support", "sales"],
                        "weight": 1.0,
                        "loss_function": "single_class",
                    }
                ]
            self.ft_details[job_id] = details
