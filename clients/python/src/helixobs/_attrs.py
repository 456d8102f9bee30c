"""Attribute keys of the helix wire contract and conversion of user values to OTel attributes."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.util.types import AttributeValue

ENTITY_ID = "helix.entity.id"
INSTRUMENT_ID = "helix.instrument.id"
PARENT_IDS = "helix.parent.ids"
IS_OPERATION = "helix.entity.is_operation"
PROCESS_NAME = "helix.process.name"
LOG_ENTITY_ID = "helix.log.entity_id"
ERROR_EVENT = "helix.error"

# The span attributes the log-context fields are read from (see _scope.current_log_fields).
LOG_FIELD_KEYS = frozenset({ENTITY_ID, LOG_ENTITY_ID, INSTRUMENT_ID, PROCESS_NAME})

_log = logging.getLogger("helixobs")

_SCALARS = (str, bool, int, float)
# Exact types that pass through unchanged: checked first, as a set look-up, on hot paths.
SCALAR_TYPES = frozenset(_SCALARS)


def to_attribute(value: Any) -> AttributeValue | None:
    """Return `value` as an OTel attribute value, keeping its type where OTel allows.

    Homogeneous sequences of scalars stay arrays; anything else OTel cannot carry
    (mappings, mixed sequences, objects) becomes compact JSON or ``str()`` so the
    metadata is never silently lost. ``None`` yields ``None`` (caller skips it).
    """
    if type(value) in SCALAR_TYPES:
        return value  # type: ignore[no-any-return]  # exactly str, bool, int or float
    if value is None:
        return None
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, bytes | bytearray):
        # OTel Python attributes cannot hold bytes; the herald renders bytes as hex anyway.
        return bytes(value).hex()
    if isinstance(value, Sequence):
        items = list(value)
        if not items:
            return ()
        kinds = {type(v) for v in items}
        if len(kinds) == 1 and next(iter(kinds)) in _SCALARS:
            return tuple(items)
        return _json(items)
    if isinstance(value, Mapping):
        return _json(value)
    return str(value)


def _json(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return str(value)


def to_attributes(values: Mapping[str, Any] | None) -> dict[str, AttributeValue]:
    """Convert a user metadata mapping into span/event attributes (keys as ``str``)."""
    if not values:
        return {}
    out: dict[str, AttributeValue] = {}
    add_attributes(out, values)
    return out


def add_attributes(out: dict[str, Any], values: Mapping[str, Any] | None) -> None:
    """`to_attributes(values)` merged into `out` (one dict fewer on hot paths)."""
    if not values:
        return
    scalars = SCALAR_TYPES
    for key, value in values.items():
        if type(value) not in scalars:
            value = to_attribute(value)
            if value is None:
                continue
        out[key if type(key) is str else str(key)] = value
