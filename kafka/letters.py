"""Dead letters as read back from the dead-letter topic: where each sits, where its
original record came from (headers ``feedamp-topic``, ``feedamp-partition``,
``feedamp-offset``, ``feedamp-timestamp``), the reason (``feedamp-reason``), and the
original key and value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka.structs import ConsumerRecord

__all__ = ["PREVIEW_CHARS", "Letter"]

PREVIEW_CHARS = 80


@dataclass(frozen=True)
class Letter:
    """One dead letter, as read from the dead-letter topic."""

    partition: int
    offset: int
    topic: str | None
    source_partition: int | None
    source_offset: int | None
    reason: str
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None

    @classmethod
    def from_record(cls, record: ConsumerRecord) -> Letter:
        """From a record of the dead-letter topic (missing headers become None)."""
        headers = {k: v.decode(errors="replace") for k, v in record.headers or () if v is not None}

        def number(name: str) -> int | None:
            value = headers.get(name, "")
            return int(value) if value.isdigit() else None

        return cls(
            partition=record.partition,
            offset=record.offset,
            topic=headers.get("feedamp-topic"),
            source_partition=number("feedamp-partition"),
            source_offset=number("feedamp-offset"),
            reason=headers.get("feedamp-reason", ""),
            key=record.key,
            value=record.value,
            timestamp=number("feedamp-timestamp"),
        )

    def preview(self, chars: int = PREVIEW_CHARS) -> str:
        """The start of the value, printable on one line."""
        if self.value is None:
            return "<no value>"
        text = self.value[: chars * 4].decode(errors="replace")
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
        return text if len(text) <= chars else text[: chars - 3] + "..."

    def line(self) -> str:
        """``<partition>/<offset>  <topic>[<partition>]@<offset>  <reason>  <value>``."""
        source = f"{self.topic or '?'}[{_opt(self.source_partition)}]@{_opt(self.source_offset)}"
        return f"{self.partition}/{self.offset}  {source}  {self.reason}  {self.preview()}"

    def to_json(self) -> dict[str, Any]:
        """The letter as JSON (key and value decoded as UTF-8, bad bytes replaced)."""
        return {
            "partition": self.partition, "offset": self.offset, "topic": self.topic,
            "source_partition": self.source_partition, "source_offset": self.source_offset,
            "reason": self.reason,
            "key": None if self.key is None else self.key.decode(errors="replace"),
            "value": None if self.value is None else self.value.decode(errors="replace"),
        }  # fmt: skip


def _opt(value: int | None) -> str:
    return "?" if value is None else str(value)
