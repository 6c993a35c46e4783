"""The InContextCache API (group iccache.dev, version v1alpha1): the one typed source
of truth. The CRD's OpenAPI schema is generated from these models
(``python -m iccache_operator.crd``), and the operator reads specs through them. The
sections the router reads as they are (retrieval, routing, verifier, opening, responses,
the router's limits, tenant limits) are the contract's settings models themselves, under
camelCase names: a router setting is declared once. Only what differs in shape (models,
the cache's storage, tenancy's Secrets, replay's schedule, the router's pods) is
declared here and mapped by hand (children/router.py: router_settings)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from iccache_contract import names
from iccache_contract.settings import (
    IneligibleSettings,
    OpeningSettings,
    QualitySettings,
    ResponsesSettings,
    RetrievalSettings,
    RoutingSettings,
    ServerLimits,
    TenantLimits,
    TenantOverrides,
    VerifierSettings,
)

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


class IneligibleSpec(_Obj, IneligibleSettings):
    """What a request the cache cannot serve faithfully (tools, a response format,
    n > 1, logprobs, a seed, non-text content) may still do."""


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


# The sections below that take a settings model as a base are that model, with the
# API's camelCase names: each setting is declared once (in the contract) and reaches the
# router by the same name (children/router.py: router_settings).
class RetrievalSpec(_Obj, RetrievalSettings):
    """Which cached examples a request gets (see the README's retrieval section)."""


class QualitySpec(_Obj, QualitySettings):
    """The quality budget (see the README): shadow comparisons, a loss estimate with a
    confidence bound, and a routing bar steered to keep the bound within maxLoss."""


class RoutingSpec(_Obj, RoutingSettings):
    """Which model answers: the policy, its quality bar and the load it weighs."""

    quality: QualitySpec = Field(default_factory=QualitySpec)


class VerifierSpec(_Obj, VerifierSettings):
    """The large model checks small answers from its token log-probabilities of them (one
    prefill, no decoding). Needs a large model whose server returns prompt
    log-probabilities: the vllm engine, or an external endpoint that does (llama.cpp's
    llama-server, the llamacpp engine, does not: the router then logs that it is off)."""


class OpeningSpec(_Obj, OpeningSettings):
    """Routing by the large model's confidence in its own opening: the large model begins
    each answer routed to it; where it is unsure of its first tokens, the small model
    answers with examples instead. Needs a large model that returns log-probabilities of
    generated tokens (the llamacpp and vllm engines both do)."""


class ResponsesSpec(_Obj, ResponsesSettings):
    """The Responses API's stored responses (for ``previous_response_id``)."""


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


class TenantLimitsSpec(_Obj, TenantLimits):
    """Per-tenant rates, shared by every router replica (counted in Redis per minute)."""


class TenantOverrideSpec(_Obj, TenantOverrides):
    """What one tenant gets instead of the defaults."""


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


class RouterSpec(_Obj, ServerLimits):
    """The router pods: how many, their image and resources, their ports, who may reach
    them, and the router's limits and timeouts (``ServerLimits``, by the same names)."""

    replicas: int = Field(default=2, ge=0, le=64)
    image: str | None = Field(default=None, description="Defaults to the operator's sidecar image")
    resources: Resources = Field(default_factory=Resources)
    http_port: int = Field(default=names.HTTP_PORT, ge=1, le=65535)
    grpc_port: int = Field(default=names.GRPC_PORT, ge=1, le=65535)
    allowed_clients: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=64,
        description="NetworkPolicy peers (podSelector, namespaceSelector, ipBlock) allowed "
        "to reach the routers; the operator is always allowed. Unset: every pod may "
        "(the routers still authenticate callers); [] allows only the operator",
    )


# The router's server settings that RouterSpec sets, by the same names.
SERVER_FIELDS = tuple(ServerLimits.model_fields)


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
