"""How the result classes become JSON data and come back from it.

Every result class is a dataclass deriving from :class:`Record`: ``to_dict()`` gives its
JSON form field by field (nested records by their own ``to_dict``), ``from_dict()`` reads
it back from the annotations. Reading is lenient so documents of older versions render:
keys it does not know are ignored, and a key the document lacks takes the field's
default; without one, an empty record, list or mapping (nothing was recorded), or
None (the figure was not measured then).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")


class Record:
    """A result dataclass with a JSON form."""

    # keys left out of the JSON when None, as pydantic's exclude_none wrote them
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset()
    # fields whose record is written inline, its keys beside this record's own (a part
    # of the summary, say, that the JSON has always had flat)
    INLINE: ClassVar[frozenset[str]] = frozenset()
    # this record's JSON keys where they differ from its field names, when written inline
    KEYS: ClassVar[Mapping[str, str]] = {}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for f in dataclasses.fields(typing.cast(Any, self)):
            value = getattr(self, f.name)
            if value is None and f.name in self.OMIT_NONE:
                continue
            if f.name in self.INLINE:
                data.update({value.KEYS.get(k, k): v for k, v in value.to_dict().items()})
                continue
            data[f.name] = plain(value)
        return data

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        built: R = build(cls, data)
        return built


def plain(value: Any) -> Any:
    """``value`` as JSON data: records by their ``to_dict``, containers item by item."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def build(kind: Any, value: Any) -> Any:
    """``value`` (plain JSON data) as an instance of the annotated type ``kind``."""
    if value is None:
        return None
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return build(inner[0], value) if len(inner) == 1 else value
    if origin is list:
        (item,) = typing.get_args(kind)
        return [build(item, v) for v in value]
    if origin is dict:
        key, item = typing.get_args(kind)
        if key is int:  # JSON keys are strings: {"1500": 3} is {1500: 3}
            return {int(k): build(item, v) for k, v in value.items()}
        return {k: build(item, v) for k, v in value.items()}
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = typing.get_type_hints(kind)
        args = {}
        inline: frozenset[str] = getattr(kind, "INLINE", frozenset())
        for f in dataclasses.fields(kind):
            if f.name in inline:
                part = hints[f.name]
                keys = {part.KEYS.get(g.name, g.name): g.name for g in dataclasses.fields(part)}
                args[f.name] = build(part, {keys[k]: v for k, v in value.items() if k in keys})
            elif f.name in value:
                args[f.name] = build(hints[f.name], value[f.name])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                args[f.name] = missing(hints[f.name])
        return kind(**args)
    return value


def missing(kind: Any) -> Any:
    """What a required field a document lacks reads as: an empty record or container
    (nothing was recorded), else None (not measured)."""
    origin = typing.get_origin(kind)
    if origin is list:
        return []
    if origin is dict:
        return {}
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        return build(kind, {})
    return None
