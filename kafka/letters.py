"""Dead letters as read back from the dead-letter topic: where each sits, where its
original record came from (headers ``feedamp-topic``, ``feedamp-partition``,
``feedamp-offset``), the reason (``feedamp-reason``), and the original key and value."""

from __future__ import annotations

from dataclasses import dataclass

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


def _opt(value: int | None) -> str:
    return "?" if value is None else str(value)
