"""Bounded in-process map from entity ID to the SpanContext of its creation span."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from opentelemetry.trace import SpanContext

DEFAULT_CAPACITY = 10_000


class EntityRegistry:
    """Thread-safe LRU so that in-process parents become span links without unbounded growth."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, SpanContext] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, entity_id: str, span_context: SpanContext) -> None:
        with self._lock:
            self._items[entity_id] = span_context
            self._items.move_to_end(entity_id)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def get(self, entity_id: str) -> SpanContext | None:
        with self._lock:
            found = self._items.get(entity_id)
            if found is not None:
                self._items.move_to_end(entity_id)
            return found

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def _reinit_after_fork(self) -> None:
        # The lock may have been held by another parent thread at fork time; the entries
        # themselves stay valid in the child (they name spans the parent really created).
        self._lock = threading.Lock()


REGISTRY = EntityRegistry()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=REGISTRY._reinit_after_fork)
