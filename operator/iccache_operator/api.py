"""The InContextCache API (group iccache.dev, version v1alpha1): the one typed source
of truth. The CRD's OpenAPI schema is generated from these models
(``python -m iccache_operator.crd``), and the operator reads specs through them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from iccache_contract import names

GROUP = "iccache.dev"
VERSION = "v1alpha1"
KIND = "InContextCache"
PLURAL = "incontextcaches"
SINGULAR = "incontextcache"
SHORT_NAMES = ["icc"]

DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
Quantity = int | str


def _rules(*rules: tuple[str, str]) -> dict[str, Any]:
    """CEL validation rules evaluated by the API server at apply time."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


class _Obj(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class SecretKeyRef(_Obj):
    name: str = Field(pattern=DNS_NAME, max_length=253, description="Secret in the same namespace")
    key: str = Field(min_length=1, max_length=253)


class Toleration(_Obj):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class EnvVar(_Obj):
    name: str = Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    value: str = ""


class Resources(_Obj):
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class ClaimModelSource(_Obj):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "!self.path.startsWith('/') && !self.path.split('/').exists(p, p == '..')",
                "path is relative to the claim's root and may not contain '..'",
            ),
        )
    )

    claim_name: str = Field(pattern=DNS_NAME, max_length=253, description="PVC in this namespace")
    path: str = Field(
        min_length=1,
        max_length=1024,
        description="The model inside the claim: a file (llama.cpp, a GGUF) or a folder (vLLM)",
    )


class HubModelSource(_Obj):
    id: str = Field(
        min_length=1, max_length=512, description="Model id on the model hub vLLM downloads from"
    )
    revision: str | None = Field(default=None, max_length=256, description="Branch, tag or commit")
    token_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Access token for gated or private models (HF_TOKEN)"
    )


class ModelSource(_Obj):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "[has(self.url), has(self.pvc), has(self.hub)].filter(x, x).size() == 1",
                "a model source is exactly one of url, pvc or hub",
            ),
            ("has(self.url) == has(self.sha256)", "url and sha256 go together"),
        )
    )

    url: str | None = Field(
        default=None,
        pattern=r"^https?://[^/]+/.*[^/]$",
        max_length=2048,
        description="A file to download (http or https) into the pod's model cache by an init "
        "container; kept across container restarts and checked against sha256",
    )
    sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="The url's file digest (hex)"
    )
    pvc: ClaimModelSource | None = Field(default=None, description="A claim that holds the model")
    hub: HubModelSource | None = Field(
        default=None, description="vLLM only: a model id vLLM downloads itself"
    )
    cache_size: Quantity = Field(
        default="20Gi", description="Size limit of the model cache volume (url and hub sources)"
    )


class ModelSpec(_Obj):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "self.engine == 'external' ? has(self.endpoint) : !has(self.endpoint)",
                "an external model needs an endpoint; vllm and llamacpp models must not set one",
            ),
            (
                "self.engine == 'external' || !has(self.apiKeySecretRef)",
                "apiKeySecretRef is only for external models",
            ),
            ("self.engine != 'external' || !has(self.source)", "external models have no source"),
            (
                "!has(self.source) || !has(self.source.hub) || self.engine == 'vllm'",
                "a hub source is only for vllm (llama.cpp serves a file: use url or pvc)",
            ),
        )
    )

    engine: Literal["vllm", "llamacpp", "external"] = Field(
        description="vllm (GPU), llamacpp (CPU), or external (an OpenAI-compatible endpoint)"
    )
    model: str = Field(
        min_length=1,
        max_length=512,
        description="The name clients and the router use for the model. Without a source it is "
        "also what the engine loads: a file in the image (llama.cpp) or a model id (vLLM)",
    )
    source: ModelSource | None = Field(
        default=None, description="Where the engine gets the weights from (not the image)"
    )
    shm_size: Quantity = Field(
        default="2Gi",
        description="vLLM only: size of the memory-backed /dev/shm (tensor parallelism needs it)",
    )
    image: str | None = Field(default=None, description="Container image; defaulted per engine")
    run_as_user: int = Field(
        default=65532,
        ge=0,
        le=2**31 - 1,
        description="The engine's user (its home and caches go to an emptyDir at /tmp); 0 "
        "runs it as root, for an image that cannot run otherwise",
    )
    replicas: int = Field(default=1, ge=0, le=64)
    resources: Resources = Field(default_factory=Resources)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    affinity: dict[str, Any] | None = Field(default=None, description="A core/v1 Affinity")
    args: list[str] = Field(default_factory=list, max_length=64)
    env: list[EnvVar] = Field(default_factory=list, max_length=64)
    max_context_tokens: int = Field(default=4096, ge=256, le=1_048_576)
    cost_per_token: float = Field(default=1.0, gt=0, description="Relative cost of one token")
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Concurrent requests at which this model counts as busy, over all"
        " replicas; the router sends work elsewhere beyond it. Default: the engine's parallel"
        " sequences per replica (llama.cpp --parallel, 4 when unset or auto; vLLM"
        " --max-num-seqs, 256) times replicas; for external models the router's default (16)",
    )
    endpoint: str | None = Field(default=None, pattern=r"^https?://", max_length=2048)
    api_key_secret_ref: SecretKeyRef | None = None


class Models(_Obj):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "self.small.engine != self.large.engine || self.small.model != self.large.model"
                " || (has(self.small.endpoint) && has(self.large.endpoint)"
                " && self.small.endpoint != self.large.endpoint)",
                "small and large must be different models",
            ),
        )
    )

    small: ModelSpec
    large: ModelSpec


class RedisStorage(_Obj):
    size: Quantity = Field(default="10Gi", pattern=QUANTITY)
    storage_class_name: str | None = None


class ManagedRedis(_Obj):
    image: str = "redis:8.2"
    storage: RedisStorage = Field(default_factory=RedisStorage)
    resources: Resources = Field(default_factory=Resources)


class ExternalRedis(_Obj):
    url: str = Field(pattern=r"^rediss?://", max_length=2048)
    password_secret_ref: SecretKeyRef | None = None


class IneligibleSpec(_Obj):
    """What a request the cache cannot serve faithfully (tools, a response format,
    n > 1, logprobs, a seed, non-text content) may still do."""

    exact_hits: bool = Field(default=False, description="May be answered from an exact hit")
    examples: bool = Field(default=False, description="May get in-context examples")
    route: Literal["large", "policy"] = Field(
        default="large", description="large: always the large model; policy: as routed"
    )
    store: bool = Field(default=False, description="Its answer may be cached")


class CacheSpec(_Obj):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "self.mode == 'external' ? has(self.external) : !has(self.external)",
                "mode external needs cache.external; mode managed must not set it",
            ),
        )
    )

    mode: Literal["managed", "external"] = "managed"
    managed: ManagedRedis = Field(default_factory=ManagedRedis)
    external: ExternalRedis | None = None
    embedding_model: str = Field(default="all-MiniLM-L6-v2", min_length=1)
    capacity: int = Field(default=100_000, ge=1, le=100_000_000)
    ttl_seconds: int = Field(default=0, ge=0, description="0 keeps examples until evicted")
    tenant_header: str = Field(default="x-iccache-tenant", pattern=r"^[a-z0-9-]+$")
    user_header: str = Field(
        default="x-iccache-user",
        pattern=r"^[a-z0-9-]+$",
        description="Gateway mode: the end user's header (read for share: user)",
    )
    share: Literal["tenant", "user"] = Field(
        default="tenant",
        description="Who a stored answer serves: everyone in its tenant, or only the end "
        "user who asked (an API key, or the gateway's user header); always only "
        "conversations under the same system prompt",
    )
    store_cut: bool = Field(
        default=False,
        description="Also keep answers the model did not end itself (cut at max_tokens)",
    )
    default_tenant: str = Field(default="default", pattern=names.TENANT_PATTERN)
    store_small: bool = Field(default=False, description="Also cache small-model answers")
    dedupe_similarity: float = Field(default=0.97, ge=0, le=1)
    redact_pii: bool = Field(default=False, description="Redact personal data before caching")
    ineligible: IneligibleSpec = Field(default_factory=IneligibleSpec)


# The public knobs of retrieval and routing. They are declared here, for the API, and
# mapped onto the router's settings in one function (children/router.py:
# router_settings); a unit test checks that every value this schema admits is one the
# router accepts, and that the defaults agree.
class RetrievalSpec(_Obj):
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
        description="The most good outcomes may raise an example's utility: feedback "
        "reorders close candidates, it cannot lift a far one past the nearest",
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


class QualitySpec(_Obj):
    """The quality budget (see the README): shadow comparisons, a loss estimate with a
    confidence bound, and a routing bar steered to keep the bound within maxLoss."""

    max_loss: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Largest share of small answers allowed to be worse than the large "
        "model's (for example 0.02); unset: estimate only",
    )
    tenants: dict[str, Annotated[float, Field(gt=0, lt=1)]] = Field(
        default_factory=dict, max_length=1000, description="A tenant's own maxLoss"
    )
    confidence: float = Field(default=0.95, ge=0.5, le=0.999, description="Of the bound")
    shadow_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share of small answers compared with the large's"
    )
    shadow_max_large_load: float = Field(
        default=0.5, ge=0, le=1, description="Shadow only while the large model is this idle"
    )
    shadow_tokens_per_minute: int = Field(
        default=20_000, ge=0, description="Large-model tokens shadow calls may spend"
    )
    agreement_threshold: float = Field(
        default=0.8,
        ge=-1,
        le=1,
        description="Without a judge: answer cosine that counts as agreeing",
    )
    window: int = Field(default=3000, ge=10, le=1_000_000, description="Outcomes estimated")
    step: float = Field(default=0.02, gt=0, le=0.5, description="Bar move per step")
    hold: int = Field(default=250, ge=1, description="New outcomes between moves")
    min_samples: int = Field(default=500, ge=1, description="Outcomes before steering")
    tenant_share: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="In the pooled budget, the largest share of the window one tenant's "
        "judged answers make while others have some (1: no bound)",
    )
    unproven_share: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Until the budget is shown to hold (minSamples judged answers, bound "
        "within maxLoss), at most this share of what would be offloaded goes to the "
        "small model (1: offload freely)",
    )
    probe_rate: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of those held requests the idle small model also answers, off "
        "the response path, to judge against the large answer (0: none)",
    )


class RoutingSpec(_Obj):
    policy: Literal["bandit", "threshold", "always-small", "always-large"] = "bandit"
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
        description="Answer with the nearest cached answer, no model, at this similarity or "
        "above (off when unset; measure it on your traffic first)",
    )
    quality: QualitySpec = Field(default_factory=QualitySpec)


class VerifierSpec(_Obj):
    """The large model checks small answers from its token log-probabilities of them (one
    prefill, no decoding). Needs a large model whose server returns prompt
    log-probabilities: the vllm engine, or an external endpoint that does (llama.cpp's
    llama-server, the llamacpp engine, does not: the router then logs that it is off)."""

    enabled: bool = Field(default=False, description="Verify small answers with the large model")
    gate: bool = Field(
        default=False,
        description="Routing mode verify: a small answer that fails is replaced by the large "
        "model's before it is returned",
    )
    gate_streams: bool = Field(
        default=True,
        description="Streams too: the small answer is checked whole before the first byte",
    )
    comparator: bool = Field(
        default=True, description="The quality budget counts a failed check as a loss"
    )
    reward: bool = Field(
        default=True, description="Every checked small answer teaches the routing policy"
    )
    prompt_format: Literal["chatml", "gemma", "llama3"] = Field(
        default="chatml", description="The large model's chat template"
    )
    statistic: Literal["mean_logprob", "min_logprob", "agreement"] = "mean_logprob"
    threshold: float = Field(
        default=-1.0, ge=-100, le=0, description="Pass at or above this, until one is learned"
    )
    unsure_below: float | None = Field(
        default=None,
        ge=-100,
        le=0,
        description="Also pass drafts where the large model is unsure how to begin "
        "(its top first token's log-probability below this)",
    )
    learn: bool = Field(default=True, description="Learn the threshold from user feedback")
    min_samples: int = Field(default=100, ge=10, le=1_000_000)


class OpeningSpec(_Obj):
    """Routing by the large model's confidence in its own opening: the large model begins
    each answer routed to it; where it is unsure of its first tokens, the small model
    answers with examples instead. Needs a large model that returns log-probabilities of
    generated tokens (the llamacpp and vllm engines both do)."""

    enabled: bool = Field(default=False, description="Decide on the large model's opening")
    tokens: int = Field(default=16, ge=1, le=256, description="Tokens the decision reads")
    unsure_below: float = Field(
        default=-2.0,
        ge=-100,
        le=0,
        description="Hand over when the least top-token log-probability is below this",
    )
    streams: bool = Field(
        default=True, description="Streams too (their first byte waits for the opening)"
    )


class ResponsesSpec(_Obj):
    """The Responses API's stored responses (for ``previous_response_id``)."""

    store_ttl_seconds: int = Field(
        default=30 * 86_400, ge=60, le=365 * 86_400, description="Kept this long (30 days)"
    )


class EmbeddingsSpec(_Obj):
    """``POST /v1/embeddings`` on the router: its own embedding model (``router``), an
    OpenAI-compatible embeddings server without a key (``backend``), or none (``off``)."""

    source: Literal["router", "backend", "off"] = "router"
    model: str = Field(
        default="all-MiniLM-L6-v2", min_length=1, description="The model name clients ask for"
    )
    base_url: str | None = Field(default=None, description="backend: its base URL ending in /v1")
    backend_model: str | None = Field(
        default=None, description="backend: the model name sent to it (default: model)"
    )

    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "self.source != 'backend' || has(self.baseUrl)",
                "embeddings.source backend needs baseUrl",
            ),
        )
    )


class TenantLimitsSpec(_Obj):
    requests_per_minute: int | None = Field(default=None, ge=1, description="None: unlimited")
    tokens_per_minute: int | None = Field(default=None, ge=1, description="None: unlimited")
    concurrent_requests: int | None = Field(
        default=None, ge=1, description="In hand at once, per router pod; None: unlimited"
    )


class TenantOverrideSpec(TenantLimitsSpec):
    ttl_seconds: int | None = Field(default=None, ge=0, description="Its examples' TTL")
    capacity: int | None = Field(default=None, ge=0, description="Most examples it may keep")


class TenancySpec(_Obj):
    """Who a request belongs to (see the README: single, api-keys, gateway)."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "self.mode != 'api-keys' || has(self.apiKeysSecretRef)",
                "mode api-keys needs apiKeysSecretRef (a Secret key holding the keys file)",
            ),
            (
                "self.mode != 'gateway' || has(self.gatewaySecretRef)",
                "mode gateway needs gatewaySecretRef (the gateway's shared secret)",
            ),
        )
    )

    mode: Literal["single", "api-keys", "gateway"] = Field(
        default="single",
        description="single: one tenant, tenant headers ignored; api-keys: the bearer key "
        "names the tenant; gateway: the tenant header counts only with the gateway's secret",
    )
    api_keys_secret_ref: SecretKeyRef | None = Field(
        default=None, description="The keys file (YAML, see `iccache keys new`)"
    )
    gateway_secret_ref: SecretKeyRef | None = None
    admin_secret_ref: SecretKeyRef | None = Field(
        default=None, description="The admin API's key (forgetting cached data)"
    )
    limits: TenantLimitsSpec = Field(default_factory=TenantLimitsSpec)
    overrides: dict[str, TenantOverrideSpec] = Field(
        default_factory=dict, max_length=1000, description="Per tenant, by name"
    )


class RouterSpec(_Obj):
    replicas: int = Field(default=2, ge=0, le=64)
    image: str | None = Field(default=None, description="Defaults to the operator's sidecar image")
    resources: Resources = Field(default_factory=Resources)
    http_port: int = Field(default=names.HTTP_PORT, ge=1, le=65535)
    grpc_port: int = Field(default=names.GRPC_PORT, ge=1, le=65535)
    max_concurrency: int = Field(default=64, ge=1, le=10_000)
    max_body_bytes: int = Field(
        default=8 * 2**20,
        ge=1024,
        le=2**30,
        description="Largest HTTP body or gRPC message; larger ones get 413",
    )
    max_messages: int = Field(default=1000, ge=1, le=100_000, description="Messages per request")
    max_prompt_bytes: int = Field(
        default=4 * 2**20, ge=1024, le=2**30, description="UTF-8 bytes of a request's text"
    )
    idle_timeout_seconds: int = Field(
        default=5, ge=1, le=3600, description="Idle keep-alive HTTP connections are closed"
    )
    header_timeout_seconds: float = Field(
        default=10, ge=0.1, le=3600, description="A request head must arrive within this, or 408"
    )
    body_timeout_seconds: float = Field(
        default=60, ge=0.1, le=3600, description="A request body must arrive within this, or 408"
    )
    send_timeout_seconds: float = Field(
        default=30,
        ge=0.1,
        le=3600,
        description="A client that takes no part of a response for this long has it ended",
    )
    drain_seconds: float = Field(
        default=5,
        ge=0,
        le=300,
        description="On shutdown, readiness fails this long before the router stops accepting",
    )
    shutdown_grace_seconds: float = Field(
        default=20, ge=0, le=3600, description="Then requests in flight get this long to finish"
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Router processes per pod, sharing its ports and learned state; "
        "give the pod about one CPU each",
    )
    decision_details: Literal["minimal", "full"] = Field(
        default="minimal",
        description="What responses say of the cache: minimal (request id, model, what "
        "was down) or full (also exact hits, similarity, examples, reasons)",
    )
    allowed_clients: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=64,
        description="NetworkPolicy peers (podSelector, namespaceSelector, ipBlock) allowed "
        "to reach the routers; the operator is always allowed. Unset: every pod may "
        "(the routers still authenticate callers); [] allows only the operator",
    )


# The router's server settings that RouterSpec sets, by the same names.
SERVER_FIELDS = (
    "max_concurrency",
    "max_body_bytes",
    "max_messages",
    "max_prompt_bytes",
    "idle_timeout_seconds",
    "header_timeout_seconds",
    "body_timeout_seconds",
    "send_timeout_seconds",
    "drain_seconds",
    "shutdown_grace_seconds",
    "workers",
    "decision_details",
)


class ReplaySpec(_Obj):
    schedule: str = Field(default="0 3 * * *", description="Cron schedule, five fields")
    suspend: bool = False
    time_zone: str | None = Field(default=None, description="IANA time zone, e.g. Europe/Paris")
    budget_requests: int = Field(default=1000, ge=0)
    budget_tokens: int = Field(default=200_000, ge=0)
    low_load_threshold: float = Field(default=0.3, ge=0, le=1)
    deadline_seconds: int = Field(default=3600, ge=60, le=86_400)

    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "self.schedule.matches('^\\\\s*\\\\S+(\\\\s+\\\\S+){4}\\\\s*$')",
                "schedule must be a cron expression with exactly 5 fields",
            ),
        )
    )


class InContextCacheSpec(_Obj):
    models: Models
    cache: CacheSpec = Field(default_factory=CacheSpec)
    retrieval: RetrievalSpec = Field(default_factory=RetrievalSpec)
    routing: RoutingSpec = Field(default_factory=RoutingSpec)
    verifier: VerifierSpec = Field(default_factory=VerifierSpec)
    opening: OpeningSpec = Field(default_factory=OpeningSpec)
    responses: ResponsesSpec = Field(default_factory=ResponsesSpec)
    embeddings: EmbeddingsSpec = Field(default_factory=EmbeddingsSpec)
    router: RouterSpec = Field(default_factory=RouterSpec)
    replay: ReplaySpec = Field(default_factory=ReplaySpec)
    tenancy: TenancySpec = Field(default_factory=TenancySpec)


class Condition(_Obj):
    """metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    observed_generation: int | None = None
    last_transition_time: str
    reason: str
    message: str = ""


class ModelStatus(_Obj):
    replicas: int = 0
    ready_replicas: int = 0


class Endpoints(_Obj):
    http: str | None = None
    grpc: str | None = None


class ReplayStatus(_Obj):
    last_run_time: str | None = None
    last_result: str | None = None


class ScopeQualityStatus(_Obj):
    scope: str = Field(description='"*": every tenant without a budget of its own; or a tenant')
    max_loss: float | None = Field(default=None, description="The budget (absent: none)")
    samples: int = Field(description="Judged small answers in the routers' windows")
    losses: int = Field(description="Of those, found worse than the large model's")
    loss: float = Field(description="Estimated loss rate (losses / samples)")
    upper: float = Field(description="Upper confidence bound of the loss rate")
    offload_ratio: float = Field(description="Small-model share of the routers' answers")
    bar_offset: float = Field(description="Added to the routing bar (highest over routers)")
    holds: bool | None = Field(default=None, description="upper <= maxLoss")


class QualityStatus(_Obj):
    """The quality budget, summed over the router pods that answered (every 20 s)."""

    routers: int = Field(description="Router pods running")
    routers_reporting: int = Field(description="Of those, the ones that answered")
    last_update_time: str
    scopes: list[ScopeQualityStatus] = Field(default_factory=list)


class InContextCacheStatus(_Obj):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    endpoints: Endpoints = Field(default_factory=Endpoints)
    small: ModelStatus = Field(default_factory=ModelStatus)
    large: ModelStatus = Field(default_factory=ModelStatus)
    replay: ReplayStatus = Field(default_factory=ReplayStatus)
    quality: QualityStatus | None = None
    retained: list[str] = Field(
        default_factory=list,
        description="What the operator no longer uses but kept because it holds data "
        "(a dropped managed Redis's claim), for you to delete",
    )
