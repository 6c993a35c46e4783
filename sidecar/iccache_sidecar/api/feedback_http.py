"""``POST /v1/feedback``: a caller's score for an answer it got, by request id."""

from __future__ import annotations

from fastapi import APIRouter, Request

from iccache_sidecar.api.http_errors import ERROR_RESPONSES
from iccache_sidecar.api.http_state import State
from iccache_sidecar.api.openai_models import FeedbackAccepted
from iccache_sidecar.api.openai_schema import FeedbackIn

router = APIRouter()


@router.post("/v1/feedback", responses=ERROR_RESPONSES)
async def feedback(body: FeedbackIn, http: Request, state: State) -> FeedbackAccepted:
    caller = state.auth.caller(http.headers)  # feedback counts only for the caller's tenant
    await state.service.feedback(body.request_id, body.score, tenant=caller.tenant)
    return FeedbackAccepted(request_id=body.request_id)
