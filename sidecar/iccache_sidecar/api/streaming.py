"""A streamed HTTP response that closes its source however it ends.

Starlette's ``StreamingResponse`` leaves its body iterator to the garbage collector when
sending fails or the client goes away; until it is collected, the router's stream
from a model stays open, the model goes on generating and the request keeps its slot.
This one closes the iterator at once (shielded from the cancellation that ended it).
"""

from __future__ import annotations

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Send


class ClosingStreamingResponse(StreamingResponse):
    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()
