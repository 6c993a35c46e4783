"""Benchmark workloads: questions with reference answers, read from files that PyPI
packages ship. A workload is a plug-in: add a class with ``name`` and ``load()`` to
``WORKLOADS``."""

from __future__ import annotations

import ast
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from iccache_dev.local import assets


@dataclass(frozen=True)
class Item:
    question: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class Workload:
    """``history`` are earlier requests (their large-model answers seed the cache);
    ``requests`` are the new ones sent through each system."""

    name: str
    history: list[Item]
    requests: list[Item]


class WorkloadSource(Protocol):
    name: str

    def load(self) -> Workload: ...


def parse_topic_line(line: str) -> Item:
    """``question<TAB>['answer', ...]``; some answer lists are CSV-quoted, with inner
    double quotes doubled."""
    question, _, raw = line.partition("\t")
    raw = raw.strip()
    if raw.startswith('"') and raw.endswith('"'):
        raw = raw[1:-1].replace('""', '"')
    answers = ast.literal_eval(raw)
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise ValueError(f"not a list of answers: {raw[:80]!r}")
    return Item(question.strip(), tuple(answers))


class NaturalQuestions:
    """NQ-open (the DPR split) from Anserini's jar in ``pyserini==0.20.0``: 8,757 dev
    questions as history, 3,610 test questions as requests."""

    name = "nq"
    FILES: ClassVar[dict[str, str]] = {
        "history": "topics-and-qrels/topics.dpr.nq.dev.txt",
        "requests": "topics-and-qrels/topics.dpr.nq.test.txt",
    }

    def load(self) -> Workload:
        with zipfile.ZipFile(assets.nq_jar()) as jar:
            parts = {
                part: [
                    parse_topic_line(line)
                    for line in jar.read(path).decode("utf-8").splitlines()
                    if line.strip()
                ]
                for part, path in self.FILES.items()
            }
        return Workload(self.name, parts["history"], parts["requests"])


WORKLOADS: dict[str, Callable[[], WorkloadSource]] = {"nq": NaturalQuestions}
