"""Which answers become examples: the pure admission decision."""

from __future__ import annotations

import pytest
from requestpath_fakes import request, settings

from iccache_sidecar.core.domain import Decision, GenerationParams, Route, RouterRequest
from iccache_sidecar.requestpath.admission import Admission, admit, example_text

CACHE = settings().cache


def decision(route: Route = Route.LARGE, fell_back: bool = False) -> Decision:
    return Decision("id", "acme", route, "p", "r", fell_back=fell_back)


def verdict(**kw: object) -> Admission:
    req = kw.pop("req", request("How tall is Mount Everest?"))
    d = kw.pop("d", decision())
    answer = kw.pop("answer", "8,849 metres.")
    return admit(
        req,  # type: ignore[arg-type]
        d,  # type: ignore[arg-type]
        req.query,  # type: ignore[attr-defined]
        answer,  # type: ignore[arg-type]
        embedded=kw.pop("embedded", True),  # type: ignore[arg-type]
        nearest_similarity=kw.pop("nearest", None),  # type: ignore[arg-type]
        cache=kw.pop("cache", CACHE),  # type: ignore[arg-type]
        finish_reason=kw.pop("finish", "stop"),  # type: ignore[arg-type]
    )


def test_a_new_large_answer_is_stored() -> None:
    assert verdict() is Admission.STORED
    assert verdict(nearest=CACHE.dedupe_similarity - 0.01) is Admission.STORED


def test_a_near_duplicate_is_not() -> None:
    assert verdict(nearest=CACHE.dedupe_similarity) is Admission.DUPLICATE


def test_too_long_an_exchange_is_not() -> None:
    long_answer = "word " * (CACHE.max_example_tokens * 2)
    assert verdict(answer=long_answer) is Admission.TOO_LONG


@pytest.mark.parametrize(
    "options", [{"no_store": True}, {"skip_cache": True}], ids=["no-store", "skip-cache"]
)
def test_the_client_can_forbid_it(options: dict[str, bool]) -> None:
    assert verdict(req=request("How tall is Mount Everest?", **options)) is Admission.SKIPPED


def test_an_ineligible_request_only_when_configured() -> None:
    tools = decision()
    tools.ineligible = "tools"
    assert verdict(d=tools) is Admission.SKIPPED
    keep = settings(cache={"ineligible": {"store": True}}).cache
    assert verdict(d=tools, cache=keep) is Admission.STORED


def test_nothing_without_a_vector_or_an_answer() -> None:
    assert verdict(embedded=False) is Admission.SKIPPED
    assert verdict(answer="  \n") is Admission.SKIPPED


def test_small_answers_only_when_configured_and_never_after_a_fall_over() -> None:
    small = decision(Route.SMALL)
    assert verdict(d=small) is Admission.SKIPPED
    keep_small = settings(cache={"store_small": True}).cache
    assert verdict(d=small, cache=keep_small) is Admission.STORED
    fell_over = decision(Route.SMALL, fell_back=True)
    assert verdict(d=fell_over, cache=keep_small) is Admission.SKIPPED
    no_large = settings(cache={"store_large": False}).cache
    assert verdict(cache=no_large) is Admission.SKIPPED


def test_redaction_applies_to_what_is_stored() -> None:
    req = request("Mail jane.doe@example.com about the invoice")
    redacting = settings(cache={"redact_pii": True}).cache
    prompt, answer = example_text(req.query, "Sent to jane.doe@example.com.", redacting)
    assert "jane.doe@example.com" not in prompt + answer
    assert example_text(req.query, "ok", CACHE) == (req.query, "ok")


def test_an_answer_shaped_by_stop_sequences_is_not_kept() -> None:
    shaped = RouterRequest(
        "acme",
        request("How tall is Mount Everest?").messages,
        GenerationParams(max_tokens=16, stop=("metres",)),
    )
    assert verdict(req=shaped, answer="8,849") is Admission.SHAPED


@pytest.mark.parametrize("finish", ["length", "content_filter", None])
def test_an_answer_the_model_did_not_end_itself_is_not_kept(finish: str | None) -> None:
    # A tiny max_tokens cuts "8,849 metres." to "8,": served to everyone as the answer.
    assert verdict(answer="8,", finish=finish) is Admission.CUT
    keep_cut = settings(cache={"store_cut": True}).cache
    assert verdict(answer="8,", finish=finish, cache=keep_cut) is Admission.STORED


def test_an_answer_the_client_steered_is_not_kept() -> None:
    question = request("How tall is Mount Everest?").messages
    hot = RouterRequest("acme", question, GenerationParams(max_tokens=16, temperature=1.8))
    warm = RouterRequest("acme", question, GenerationParams(max_tokens=16, temperature=0.7))
    assert verdict(req=hot) is Admission.SHAPED
    assert verdict(req=warm) is Admission.STORED
