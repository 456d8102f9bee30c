"""Bounded in-process map from entity ID to the SpanContext of its creation span."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from opentelemetry.trace import Link, SpanContext

from ._scope import links_for

DEFAULT_CAPACITY = 10_000


class EntityRegistry:
    """Thread-safe bounded map, so that in-process parents become span links.

    Two generations of plain dicts: entries go into the current one; when it holds
    `capacity` entries it becomes the previous one and the one before is dropped. So the
    `capacity` most recently registered or looked-up entities are always known, at most
    twice as many are kept, and a registration is one dict store (every creation makes
    one: an ordered LRU with a lock cost several times more). Single dict operations are
    atomic, so only the generation switch takes the lock.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._current: dict[str, SpanContext] = {}
        self._previous: dict[str, SpanContext] = {}
        self._lock = threading.Lock()

    def put(self, entity_id: str, span_context: SpanContext) -> None:
        current = self._current
        current[entity_id] = span_context
        if len(current) >= self._capacity:
            self._rotate(current)

    def _rotate(self, full: dict[str, SpanContext]) -> None:
        with self._lock:
            if self._current is full:  # not already switched by another thread
                self._previous = full
                self._current = {}

    def get(self, entity_id: str) -> SpanContext | None:
        found = self._current.get(entity_id)
        if found is None:
            found = self._previous.get(entity_id)
            if found is not None:
                self.put(entity_id, found)  # used again: keep it in the current generation
        return found

    def links_to(self, entity_ids: Sequence[str]) -> list[Link] | None:
        """One link per distinct known creation span among `entity_ids`; None if none known."""
        current, previous = self._current, self._previous
        found: list[SpanContext] = []
        for entity_id in entity_ids:
            sc = current.get(entity_id)
            if sc is None:
                sc = previous.get(entity_id)
                if sc is None:
                    continue
                self.put(entity_id, sc)
            found.append(sc)
        return links_for(found) if found else None

    def __len__(self) -> int:
        return len(self._current.keys() | self._previous.keys())

    def clear(self) -> None:
        with self._lock:
            self._current = {}
            self._previous = {}

    def _reinit_after_fork(self) -> None:
        # The lock may have been held by another parent thread at fork time; the entries
        # themselves stay valid in the child (they name spans the parent really created).
        self._lock = threading.Lock()


REGISTRY = EntityRegistry()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=REGISTRY._reinit_after_fork)
