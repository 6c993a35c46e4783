"""Progress of a replay run: a bar on a terminal, one structured log line per step
otherwise (a CronJob's logs)."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from tqdm import tqdm

log = logging.getLogger("iccache.replay")


class Progress:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._bar: tqdm[Any] | None = None

    @property
    def interactive(self) -> bool:
        return self._stream.isatty()

    def start(self, total: int, what: str) -> None:
        if self.interactive:
            self._bar = tqdm(total=total, desc=what, unit="ex", file=self._stream)
        log.info("replay start what=%s total=%d", what, total)

    def step(self, **fields: object) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(" ".join(f"{k}={v}" for k, v in fields.items()))
            self._bar.update(1)
        else:
            log.info("replay step %s", " ".join(f"{k}={v}" for k, v in fields.items()))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
