"""helixobs: track data products (entities) of scientific pipelines over OpenTelemetry."""

from __future__ import annotations

from ._auth import AuthError
from .instrument import Instrument, current_entity_id
from .logging import configure_logging, install_context_fields
from .setup import setup  # the function; see below
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

# `from .setup import setup` above loads the submodule and then rebinds the package attribute
# `helixobs.setup` to the function, for good: the import system sets that attribute only when
# it first loads the submodule. `from helixobs.setup import setup` still gets the module from
# sys.modules, so both spellings work.

__version__ = "0.6.0"
