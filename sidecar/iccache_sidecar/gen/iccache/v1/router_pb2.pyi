from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelChoice(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_CHOICE_UNSPECIFIED: _ClassVar[ModelChoice]
    MODEL_CHOICE_SMALL: _ClassVar[ModelChoice]
    MODEL_CHOICE_LARGE: _ClassVar[ModelChoice]
MODEL_CHOICE_UNSPECIFIED: ModelChoice
MODEL_CHOICE_SMALL: ModelChoice
MODEL_CHOICE_LARGE: ModelChoice

class Message(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("tenant", "messages", "prompt", "max_tokens", "temperature", "top_p", "stop", "skip_cache", "no_store", "force_model")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SKIP_CACHE_FIELD_NUMBER: _ClassVar[int]
    NO_STORE_FIELD_NUMBER: _ClassVar[int]
    FORCE_MODEL_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    prompt: str
    max_tokens: int
    temperature: float
    top_p: float
    stop: _containers.RepeatedScalarFieldContainer[str]
    skip_cache: bool
    no_store: bool
    force_model: ModelChoice
    def __init__(self, tenant: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., prompt: _Optional[str] = ..., max_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., stop: _Optional[_Iterable[str]] = ..., skip_cache: _Optional[bool] = ..., no_store: _Optional[bool] = ..., force_model: _Optional[_Union[ModelChoice, str]] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("request_id", "model", "backend_model", "example_ids", "max_similarity", "policy", "reason", "exact_hit", "degraded", "verified", "opening")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BACKEND_MODEL_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_IDS_FIELD_NUMBER: _ClassVar[int]
    MAX_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXACT_HIT_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    OPENING_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: ModelChoice
    backend_model: str
    example_ids: _containers.RepeatedScalarFieldContainer[str]
    max_similarity: float
    policy: str
    reason: str
    exact_hit: bool
    degraded: bool
    verified: bool
    opening: float
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[_Union[ModelChoice, str]] = ..., backend_model: _Optional[str] = ..., example_ids: _Optional[_Iterable[str]] = ..., max_similarity: _Optional[float] = ..., policy: _Optional[str] = ..., reason: _Optional[str] = ..., exact_hit: _Optional[bool] = ..., degraded: _Optional[bool] = ..., verified: _Optional[bool] = ..., opening: _Optional[float] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("text", "finish_reason", "usage", "decision")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    text: str
    finish_reason: str
    usage: Usage
    decision: Decision
    def __init__(self, text: _Optional[str] = ..., finish_reason: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...

class GenerateChunk(_message.Message):
    __slots__ = ("delta", "finish_reason", "usage", "decision")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    delta: str
    finish_reason: str
    usage: Usage
    decision: Decision
    def __init__(self, delta: _Optional[str] = ..., finish_reason: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("request_id", "score", "tenant")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    score: float
    tenant: str
    def __init__(self, request_id: _Optional[str] = ..., score: _Optional[float] = ..., tenant: _Optional[str] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    def __init__(self, accepted: _Optional[bool] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BackendStats(_message.Message):
    __slots__ = ("in_flight", "latency_ewma_seconds", "healthy", "requests")
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_EWMA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    in_flight: int
    latency_ewma_seconds: float
    healthy: bool
    requests: int
    def __init__(self, in_flight: _Optional[int] = ..., latency_ewma_seconds: _Optional[float] = ..., healthy: _Optional[bool] = ..., requests: _Optional[int] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("requests", "small_requests", "large_requests", "exact_hits", "offload_ratio", "cached_examples", "policy", "backends")
    class BackendsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: BackendStats
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[BackendStats, _Mapping]] = ...) -> None: ...
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    SMALL_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    LARGE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    EXACT_HITS_FIELD_NUMBER: _ClassVar[int]
    OFFLOAD_RATIO_FIELD_NUMBER: _ClassVar[int]
    CACHED_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    requests: int
    small_requests: int
    large_requests: int
    exact_hits: int
    offload_ratio: float
    cached_examples: int
    policy: str
    backends: _containers.MessageMap[str, BackendStats]
    def __init__(self, requests: _Optional[int] = ..., small_requests: _Optional[int] = ..., large_requests: _Optional[int] = ..., exact_hits: _Optional[int] = ..., offload_ratio: _Optional[float] = ..., cached_examples: _Optional[int] = ..., policy: _Optional[str] = ..., backends: _Optional[_Mapping[str, BackendStats]] = ...) -> None: ...
