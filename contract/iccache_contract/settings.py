"""The router's settings: one typed object, read from the file the operator renders.

Load order (later wins): defaults, the YAML/JSON file named by ``ICCACHE_CONFIG`` (or
passed in), then environment variables ``ICCACHE_<SECTION>__<FIELD>`` (for example
``ICCACHE_ROUTING__POLICY=threshold``). This module imports only pydantic and YAML, so the
operator renders the same model without the data plane's dependencies.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from iccache_contract import names

PolicyName = Literal["bandit", "threshold", "always-small", "always-large"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackendSettings(_Section):
    """An OpenAI-compatible model server (llama.cpp, vLLM or an external endpoint)."""

    base_url: str = Field(description="Base URL ending in /v1")
    model: str = Field(description="Model name sent to the backend")
    api_key_env: str | None = Field(
        default=None, description="Environment variable that holds the API key, if any"
    )
    cost_per_token: float = Field(default=1.0, gt=0, description="Relative cost of one token")
    max_context_tokens: int = Field(default=4096, ge=256)
    timeout_seconds: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=1, ge=0, le=5)
    max_in_flight: int = Field(
        default=16, ge=1, description="Concurrent requests at which the backend is saturated"
    )
    content_types: list[str] | None = Field(
        default=None,
        description="Content part types the model accepts (for example [text, image_url]); "
        "None: forward any and let the model answer",
    )


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:6379"
    password_env: str | None = None
    index_name: str = Field(default="iccache", pattern=r"^[A-Za-z0-9_:-]+$")
    key_prefix: str = Field(default="iccache", pattern=r"^[A-Za-z0-9_:-]+$")
    timeout_seconds: float = Field(default=1.0, gt=0)
    retry_after_seconds: float = Field(
        default=5.0, gt=0, description="How long to skip Redis after it failed"
    )


class EmbeddingSettings(_Section):
    model_path: str | None = Field(
        default=None, description="sentence-transformers folder; default: the packaged MiniLM"
    )
    batch_size: int = Field(default=64, ge=1, le=1024)
    threads: int = Field(
        default=1,
        ge=0,
        le=256,
        description="Embedding threads per router process (ONNX Runtime intra-op, or torch); "
        "0: the runtime's default (every core of the machine). One leaves the process's "
        "event loop a core; use server.workers for more cores (measured in the README)",
    )
    max_wait_ms: float = Field(
        default=0.0, ge=0, le=100, description="Extra wait to grow a batch (0: take what is queued)"
    )


class RetrievalSettings(_Section):
    candidates: int = Field(default=16, ge=1, le=200)
    max_examples: int = Field(default=3, ge=0, le=16)
    token_budget: int = Field(default=768, ge=0, le=65_536)
    min_similarity: float = Field(default=0.55, ge=-1, le=1)
    diversity: float = Field(
        default=0.3, ge=0, le=1, description="MMR weight against redundant examples"
    )
    value_weight: float = Field(
        default=0.5, ge=0, le=1, description="Weight of the learned value against similarity"
    )
    max_value_lift: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="The most good outcomes may raise an example's utility (similarity "
        "units times 1 - value_weight): feedback reorders close candidates, it cannot lift "
        "a far one past the nearest",
    )
    context_turns: int = Field(
        default=1,
        ge=0,
        le=8,
        description="Earlier user turns embedded (and stored) with a follow-up question",
    )
    hybrid_policy: Literal["auto", "batches", "adhoc"] = Field(
        default="auto",
        description="How the vector search meets the tenant filter: auto (the Query Engine "
        "decides), batches (walk the HNSW graph, filter as it goes) or adhoc (scan the "
        "tenant's examples); see the README's sizing table",
    )


class QualitySettings(_Section):
    """The quality budget: shadow comparisons of small answers against the large model,
    an online loss estimate, and a routing bar steered to keep it (see the README)."""

    max_loss: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Largest share of small-model answers allowed to be worse than the large "
        "model's; the bar is steered so that the estimate's upper bound stays within it "
        "(None: estimate only, do not steer)",
    )
    tenants: dict[str, Annotated[float, Field(gt=0, lt=1)]] = Field(
        default_factory=dict,
        max_length=1000,
        description="A tenant's own max_loss (its own estimate and bar)",
    )
    confidence: float = Field(default=0.95, ge=0.5, le=0.999, description="Of the bound")
    shadow_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of small-routed answers also answered by the large model off the "
        "response path and compared (0: no shadow comparisons)",
    )
    shadow_max_large_load: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Shadow only while the large model's load (in flight / max) is below this",
    )
    shadow_tokens_per_minute: int = Field(
        default=20_000, ge=0, description="Large-model tokens the shadow calls may spend"
    )
    agreement_threshold: float = Field(
        default=0.8,
        ge=-1,
        le=1,
        description="Without a judge: a small answer whose embedding has at least this "
        "cosine with the large answer's counts as no worse",
    )
    window: int = Field(default=3000, ge=10, le=1_000_000, description="Outcomes estimated")
    step: float = Field(default=0.02, gt=0, le=0.5, description="Bar move per step")
    hold: int = Field(default=250, ge=1, description="New outcomes between moves")
    min_samples: int = Field(default=500, ge=1, description="Outcomes before steering")
    tenant_share: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="In the pooled budget (every tenant without one of its own), the largest "
        "share of the window one tenant's judged answers make while other tenants have some: "
        "one tenant's feedback moves the others' bar by a bounded amount (1: no bound)",
    )
    unproven_share: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Until a budget is shown to hold (min_samples judged answers at the "
        "current bar, their upper bound within max_loss), at most this share of the "
        "requests the policy would offload go to the small model (the rest to the large "
        "one): offload is earned by evidence (1: offload freely)",
    )
    probe_rate: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of the requests held to the large model (unproven_share) that "
        "the small model also answers, off the response path and only while it is idle; "
        "compared with the large answer served, they count in the budget and teach the "
        "policy (0: no probes)",
    )

    def budget(self, tenant: str) -> float | None:
        return self.tenants.get(tenant, self.max_loss)


class RoutingSettings(_Section):
    policy: PolicyName = "bandit"
    exploration_rate: float = Field(default=0.05, ge=0, le=1)
    quality_target: float = Field(
        default=0.7,
        ge=0,
        le=1,
        description="Predicted small-model quality needed at no load (or the large model's "
        "predicted quality for the request, less the tolerance, when lower)",
    )
    quality_tolerance: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Predicted quality the small model may fall short of the large one's "
        "(the price of its lower cost)",
    )
    similarity_threshold: float = Field(default=0.75, ge=-1, le=1)
    high_load: float = Field(
        default=0.8, gt=0, le=1, description="Large-model load (in-flight/max) that counts as high"
    )
    load_relief: float = Field(
        default=0.3, ge=0, le=1, description="How far the quality bar drops at full load"
    )
    reuse_similarity: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Answer with the nearest cached answer, no model, when its question is "
        "at least this similar (cosine; a plain semantic cache's rule). None: off. Measure "
        "it on your traffic first (iccache bench): it is only as safe as your near "
        "duplicates are true duplicates",
    )
    quality: QualitySettings = Field(default_factory=QualitySettings)


class IneligibleSettings(_Section):
    """What a request the cache cannot serve faithfully may still do (tools, a response
    format, n > 1, logprobs, a seed, non-text content): by default nothing but reach the
    large model."""

    exact_hits: bool = Field(default=False, description="May be answered from an exact hit")
    examples: bool = Field(default=False, description="May get in-context examples")
    route: Literal["large", "policy"] = Field(
        default="large", description="large: always the large model; policy: as routed"
    )
    store: bool = Field(default=False, description="Its answer may be cached")


class CacheSettings(_Section):
    exact_match: bool = True
    store_large: bool = True
    store_small: bool = False
    dedupe_similarity: float = Field(default=0.97, ge=0, le=1)
    capacity: int = Field(default=100_000, ge=1)
    ttl_seconds: int = Field(default=0, ge=0, description="0 keeps examples until evicted")
    redact_pii: bool = False
    max_example_tokens: int = Field(default=512, ge=16)
    store_cut: bool = Field(
        default=False,
        description="Also keep answers the model did not end itself (finish_reason length: "
        "cut at max_tokens); they are served whole to others, so only for workloads whose "
        "answers are meant to be cut",
    )
    ineligible: IneligibleSettings = IneligibleSettings()
    share: Literal["tenant", "user"] = Field(
        default="tenant",
        description="Who a stored answer is shared with: everyone in its tenant, or only "
        "the end user who asked (the API key in api-keys mode, tenancy.user_header in "
        "gateway mode); either way only with conversations under the same system prompt",
    )


class TenantLimits(_Section):
    """Per-tenant rates, shared by every router replica (counted in Redis per minute)."""

    requests_per_minute: int | None = Field(default=None, ge=1, description="None: unlimited")
    tokens_per_minute: int | None = Field(
        default=None, ge=1, description="Prompt and completion tokens; None: unlimited"
    )
    concurrent_requests: int | None = Field(
        default=None,
        ge=1,
        description="Requests in hand at once, per router process (not shared by replicas), "
        "so that one tenant cannot hold every slot; None: unlimited",
    )

    def over(self, base: TenantLimits) -> TenantLimits:
        """These limits, each one that is unset taken from ``base``."""
        return TenantLimits(
            requests_per_minute=self.requests_per_minute or base.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute or base.tokens_per_minute,
            concurrent_requests=self.concurrent_requests or base.concurrent_requests,
        )


class TenantOverrides(TenantLimits):
    """What one tenant gets instead of the defaults."""

    ttl_seconds: int | None = Field(default=None, ge=0, description="Its examples' TTL")
    capacity: int | None = Field(default=None, ge=0, description="Most examples it may keep")


class TenancySettings(_Section):
    """Who a request belongs to. ``single``: everyone is ``default_tenant`` and tenant
    headers are ignored. ``api-keys``: ``Authorization: Bearer <key>`` names the tenant
    (keys in ``keys_file``, reloaded when it changes). ``gateway``: the ``header`` is
    honoured only from callers that present the gateway's shared secret."""

    mode: Literal["single", "api-keys", "gateway"] = "single"
    default_tenant: str = Field(default="default", pattern=names.TENANT_PATTERN)
    keys_file: str | None = Field(default=None, description="api-keys: the mounted keys file")
    header: str = Field(default="x-iccache-tenant", description="gateway: the tenant header")
    gateway_secret_env: str | None = Field(
        default=None, description="gateway: variable holding the gateway's shared secret"
    )
    gateway_secret_header: str = "x-iccache-gateway-secret"
    user_header: str = Field(
        default="x-iccache-user",
        description="gateway: the end user's header (read for cache.share: user)",
    )
    admin_key_env: str | None = Field(
        default=None, description="Variable holding the admin API's key (None: no admin API)"
    )
    limits: TenantLimits = TenantLimits()
    overrides: dict[str, TenantOverrides] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _mode_needs_its_secret(self) -> TenancySettings:
        if self.mode == "api-keys" and not self.keys_file:
            raise ValueError("tenancy.mode api-keys needs tenancy.keys_file")
        if self.mode == "gateway" and not self.gateway_secret_env:
            raise ValueError("tenancy.mode gateway needs tenancy.gateway_secret_env")
        return self

    def limits_of(self, tenant: str) -> TenantLimits:
        o = self.overrides.get(tenant)
        return self.limits if o is None else o.over(self.limits)


class ApiKey(_Section):
    """One entry of the keys file. Give ``sha256`` (of the key) rather than ``key``."""

    tenant: str = Field(pattern=names.TENANT_PATTERN)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    key: str | None = Field(default=None, min_length=16, description="Hashed when loaded")
    name: str = Field(default="", description="Who holds it (shown in logs; never the key)")
    models: list[str] | None = Field(default=None, description="Models it may ask for")
    revoked: bool = False
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_form(self) -> ApiKey:
        if (self.sha256 is None) == (self.key is None):
            raise ValueError("give exactly one of sha256 and key")
        return self


class KeysFile(_Section):
    """The api-keys mode's file (the ``keys.yaml`` of a Secret)."""

    keys: list[ApiKey] = Field(default_factory=list)


class ServerLimits(_Section):
    """The router's limits and timeouts: an InContextCache's ``router`` section sets
    them by the same names (the CRD's schema is made from these fields)."""

    max_concurrency: int = Field(
        default=64, ge=1, le=10_000, description="Requests handled at once; more get 429"
    )
    decision_details: Literal["minimal", "full"] = Field(
        default="minimal",
        description="What a response says of the cache: minimal (its request id, the model "
        "that answered, what was down) or full (also exact hits, similarity, examples, "
        "policy and reason: tells a caller whether someone in its scope asked the same)",
    )
    max_body_bytes: int = Field(
        default=8 * 2**20,
        ge=1024,
        le=2**30,
        description="Largest request body (HTTP) or message (gRPC); larger ones get 413",
    )
    max_messages: int = Field(default=1000, ge=1, le=100_000, description="Messages in one request")
    max_prompt_bytes: int = Field(
        default=4 * 2**20,
        ge=1024,
        le=2**30,
        description="UTF-8 bytes of all messages' text together",
    )
    idle_timeout_seconds: int = Field(
        default=5, ge=1, le=3600, description="An idle keep-alive HTTP connection is closed"
    )
    header_timeout_seconds: float = Field(
        default=10,
        ge=0.1,
        le=3600,
        description="An HTTP request head (request line and headers) must arrive within "
        "this long of the connection opening or of the previous response, or the "
        "connection gets 408 and is closed",
    )
    body_timeout_seconds: float = Field(
        default=60,
        ge=0.1,
        le=3600,
        description="An HTTP request body must arrive within this long of its head, or 408",
    )
    send_timeout_seconds: float = Field(
        default=30,
        ge=0.1,
        le=3600,
        description="Each part of an HTTP response must be taken by the client within this "
        "long; a client that stops reading a stream has it ended (the model stops, the "
        "slot is freed, the connection is closed)",
    )
    drain_seconds: float = Field(
        default=5,
        ge=0,
        le=300,
        description="After SIGTERM: readiness fails while requests are still served, so "
        "that Services and load balancers stop sending new ones before the listener closes",
    )
    shutdown_grace_seconds: float = Field(
        default=20,
        ge=0,
        le=3600,
        description="After the drain: how long requests in flight get to finish",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Router processes sharing the ports (SO_REUSEPORT) and learned state "
        "(Redis); max_concurrency applies to each; give the pod about one CPU each",
    )


class ServerSettings(ServerLimits):
    host: str = "0.0.0.0"
    http_port: int = Field(default=names.HTTP_PORT, ge=0, le=65535)
    grpc_port: int = Field(default=names.GRPC_PORT, ge=0, le=65535)
    max_tokens_default: int = Field(default=256, ge=1)
    public_model: str = Field(default="iccache", description="Model name clients ask for")

    @model_validator(mode="after")
    def _fixed_ports_for_workers(self) -> ServerSettings:
        if self.workers > 1 and 0 in (self.http_port, self.grpc_port):
            raise ValueError(
                "workers > 1 need fixed ports: http_port and grpc_port 0 pick one per process"
            )
        return self


class JudgeSettings(_Section):
    base_url: str | None = None
    model: str = "judge"
    api_key_env: str | None = None
    sample_rate: float = Field(default=0.0, ge=0, le=1)


class VerifierSettings(_Section):
    """The large model checks small answers from its own token log-probabilities of them:
    one prefill of prompt + answer, no decoding. Needs a large-model server that returns
    prompt log-probabilities (vLLM's ``prompt_logprobs``, or ``echo`` with ``logprobs``);
    the router detects which at start and turns the verifier off, saying so, when none."""

    enabled: bool = Field(default=False, description="Detect support at start and verify")
    gate: bool = Field(
        default=False,
        description="Routing mode verify: every small answer is verified before it is "
        "returned; one that fails is replaced by the large model's answer",
    )
    gate_streams: bool = Field(
        default=True,
        description="verify mode for streams: the small answer is generated whole and "
        "checked before the first byte, then sent in one piece (the time to first byte "
        "becomes the small answer's time plus the check); False: streams are not gated",
    )
    comparator: bool = Field(
        default=True,
        description="The quality budget's shadow comparisons and probes use the verifier "
        "(a prefill) instead of a whole large answer and the agreement or judge comparison",
    )
    reward: bool = Field(
        default=True,
        description="Every verified small answer teaches the routing policy (pass 1, fail 0)",
    )
    prompt_format: Literal["chatml", "gemma", "llama3"] = Field(
        default="chatml", description="The large model's chat template, for the prefill"
    )
    statistic: Literal["mean_logprob", "min_logprob", "agreement"] = Field(
        default="mean_logprob",
        description="What the pass rule compares with the threshold (higher is better)",
    )
    threshold: float = Field(
        default=-1.0,
        ge=-100,
        le=1,
        description="A draft passes when its statistic is at least this, until outcomes "
        "show a threshold (see learn)",
    )
    unsure_below: float | None = Field(
        default=None,
        ge=-100,
        le=0,
        description="Also pass a draft wherever the large model is unsure how to begin its "
        "own answer (its top first token's log-probability below this): there the large "
        "answer is no safer (None: off)",
    )
    learn: bool = Field(
        default=True,
        description="Learn the threshold from outcomes (feedback, probes): the lowest one at "
        "which passed drafts are shown to lose at most routing.quality.max_loss",
    )
    min_samples: int = Field(
        default=100, ge=10, le=1_000_000, description="Outcomes before learning"
    )
    echo_top_logprobs: int = Field(
        default=5, ge=1, le=20, description="echo form: top entries asked per position"
    )
    timeout_seconds: float = Field(default=20.0, gt=0, le=600)


class OpeningSettings(_Section):
    """Routing by the large model's confidence in its own opening: the large model begins
    every answer the routing sends it; where it is unsure of its first tokens (the least
    top-token log-probability among them below ``unsure_below``), its answer is stopped and
    the small model answers with examples instead. Where the large model is unsure, its
    answer is often wrong too, so handing it over loses little. Needs a large-model
    server that returns log-probabilities of generated tokens (``logprobs`` in chat
    completions: vLLM, llama.cpp's llama-server, llama-cpp-python)."""

    enabled: bool = Field(default=False, description="Decide on the large model's opening")
    tokens: int = Field(
        default=16, ge=1, le=256, description="Tokens of the opening the decision reads"
    )
    unsure_below: float = Field(
        default=-2.0,
        ge=-100,
        le=0,
        description="Hand the request to the small model when the least top-token "
        "log-probability of the opening is below this",
    )
    streams: bool = Field(
        default=True,
        description="Streams too (the opening is held back until the decision: the time "
        "to first byte grows by the opening's tokens); False: streams go as routed",
    )


class ResponsesSettings(_Section):
    """The Responses API (``POST /v1/responses``): how long stored responses are kept for
    ``previous_response_id`` and ``GET /v1/responses/{id}``."""

    store_ttl_seconds: int = Field(
        default=30 * 86_400, ge=60, le=365 * 86_400, description="Kept this long (30 days)"
    )


class EmbeddingsApiSettings(_Section):
    """``POST /v1/embeddings``: answered by the router's own embedding model
    (``router``), passed to an OpenAI-compatible embeddings server (``backend``), or
    not served (``off``: 404)."""

    source: Literal["router", "backend", "off"] = "router"
    model: str = Field(
        default="all-MiniLM-L6-v2", min_length=1, description="The model name clients ask for"
    )
    base_url: str | None = Field(default=None, description="backend: its base URL ending in /v1")
    backend_model: str | None = Field(
        default=None, description="backend: the model name sent to it (default: model)"
    )
    api_key_env: str | None = Field(default=None, description="backend: its API key's variable")
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_inputs: int = Field(default=256, ge=1, le=4096, description="Texts in one request")

    @model_validator(mode="after")
    def _backend_has_url(self) -> EmbeddingsApiSettings:
        if self.source == "backend" and not self.base_url:
            raise ValueError("embeddings_api.source 'backend' needs base_url")
        return self


class ReplaySettings(_Section):
    """The off-peak replay job (``iccache replay``); its flags override these."""

    low_load: float = Field(
        default=0.3, ge=0, le=1, description="Start and keep going only while load is at most this"
    )
    budget_requests: int = Field(default=1000, ge=0, description="Model requests per tenant")
    budget_tokens: int = Field(default=200_000, ge=0, description="Model tokens per tenant")
    deadline_seconds: int = Field(default=3600, ge=1, description="Wall time for the whole run")
    top_examples: int = Field(default=50, ge=0, description="Highest-gain examples per tenant")
    samples: int = Field(default=3, ge=1, le=16, description="Large-model answers per distil")
    temperature: float = Field(default=0.8, ge=0, le=2)
    answer_max_tokens: int = Field(default=256, ge=1)
    isolation_similarity: float = Field(
        default=0.8, ge=-1, le=1, description="Expand examples whose nearest neighbour is below"
    )
    paraphrases: int = Field(default=3, ge=1, le=16, description="Companions per expansion")
    min_paraphrase_similarity: float = Field(default=0.6, ge=-1, le=1)
    improve_margin: float = Field(
        default=0.02, ge=0, le=1, description="How much better a new answer must score"
    )
    idle_tau_seconds: float = Field(
        default=604_800.0, gt=0, description="Time constant of idleness in eviction"
    )


class RouterSettings(BaseSettings):
    """Everything one router process needs."""

    model_config = SettingsConfigDict(
        env_prefix="ICCACHE_", env_nested_delimiter="__", extra="forbid"
    )

    small: BackendSettings
    large: BackendSettings
    redis: RedisSettings = RedisSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    routing: RoutingSettings = RoutingSettings()
    cache: CacheSettings = CacheSettings()
    tenancy: TenancySettings = TenancySettings()
    server: ServerSettings = ServerSettings()
    judge: JudgeSettings = JudgeSettings()
    verifier: VerifierSettings = VerifierSettings()
    opening: OpeningSettings = OpeningSettings()
    responses: ResponsesSettings = ResponsesSettings()
    embeddings_api: EmbeddingsApiSettings = EmbeddingsApiSettings()
    replay: ReplaySettings = ReplaySettings()

    @model_validator(mode="after")
    def _distinct_backends(self) -> RouterSettings:
        if (self.small.base_url, self.small.model) == (self.large.base_url, self.large.model):
            raise ValueError("small and large must be different backends")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init arguments; the environment overrides them.
        return (env_settings, init_settings)

    @classmethod
    def load(cls, path: Path | None = None) -> RouterSettings:
        """Read the settings file (YAML or JSON), then apply environment overrides."""
        if path is None and os.environ.get(names.CONFIG_ENV):
            path = Path(os.environ[names.CONFIG_ENV])
        data: dict[str, Any] = {}
        if path is not None:
            text = path.read_text()
            try:
                loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            except (json.JSONDecodeError, yaml.YAMLError) as exc:
                raise ValueError(f"{path} is not valid YAML/JSON: {exc}") from exc
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: expected a mapping at the top level")
            data = loaded
        return cls(**data)
