"""helixobs: track data products (entities) of scientific pipelines over OpenTelemetry."""

from __future__ import annotations

from ._auth import AuthError
from .instrument import Instrument, current_entity_id
from .logging import configure_logging, install_context_fields
from .setup import setup
from .token import Token

__all__ = [
    "AuthError",
    "Instrument",
    "Token",
    "configure_logging",
    "current_entity_id",
    "install_context_fields",
    "setup",
]

__version__ = "0.6.0"
