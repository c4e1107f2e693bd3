"""The :class:`Serializer` (encoder and decoder together, with the public API), the
process-wide :data:`default_serializer` and :func:`register_type`."""

from __future__ import annotations

import json
from typing import Any

import orjson

from wfe_core.errors import SerializationError
from wfe_core.serialization._common import JSONValue, _Decoder, _Encoder, _Fail, _json_text
from wfe_core.serialization.decoder import _Decoding
from wfe_core.serialization.encoder import _Encoding
from wfe_core.serialization.type_registry import TypeRegistry
from wfe_core.serialization.undecodable import Undecodable

__all__ = ["Serializer", "default_serializer", "register_type"]


class Serializer(_Encoding, _Decoding):
    """Converts workflow and event data to JSON values / JSON text and back, type-faithfully."""

    registry: TypeRegistry
    """The allowlist of user types this serializer may rebuild."""

    def __init__(self, registry: TypeRegistry | None = None) -> None:
        """Use ``registry``, or the module-level default one (see :func:`register_type`)."""
        self.registry = registry if registry is not None else _default_registry
        self._class_enc: dict[type, _Encoder] = self._fixed_encoders()
        self._kind_dec: dict[str, _Decoder] = self._fixed_decoders()
        self._user_dec: dict[tuple[str, type], _Decoder] = {}

    # ------------------------------------------------------------------ public API

    def register(self, *types: type) -> None:
        """Allow ``types`` to be rebuilt from stored data (same as ``registry.register``)."""
        self.registry.register(*types)

    def to_primitive(self, value: Any, path: str = "data") -> JSONValue:
        """Return ``value`` as a plain JSON value; refuse what cannot round-trip.

        Raises :class:`~wfe_core.errors.SerializationError` naming the offending field
        (``path`` is the name of the root, ``data`` by default).
        """
        try:
            return self._enc(value)
        except _Fail as fail:
            raise fail.to_error(path) from fail.cause
        except RecursionError:
            raise SerializationError(
                "the value is nested too deeply or contains a reference cycle", path
            ) from None

    def from_primitive(self, value: JSONValue, path: str = "data") -> Any:
        """Rebuild the value that :meth:`to_primitive` turned into ``value``.

        Raises :class:`~wfe_core.errors.SerializationError` naming the field when the
        stored form is malformed or names a type that is not registered.
        """
        try:
            return self._dec(value)
        except _Fail as fail:
            raise fail.to_error(path) from fail.cause
        except RecursionError:
            raise SerializationError("the stored value is nested too deeply", path) from None

    def dumps(self, value: Any, path: str = "data") -> str:
        """Return ``value`` as JSON text (see :meth:`to_primitive`); an
        :class:`Undecodable` gives its ``raw`` text back verbatim."""
        if type(value) is Undecodable:
            return value.raw
        primitive = self.to_primitive(value, path)
        try:
            return orjson.dumps(primitive).decode()
        except orjson.JSONEncodeError:  # deeper than orjson's nesting limit
            try:
                return json.dumps(
                    primitive, ensure_ascii=False, allow_nan=False, separators=(",", ":")
                )
            except (ValueError, RecursionError) as exc:
                raise SerializationError(f"cannot write the value as JSON: {exc}", path) from exc

    def loads(self, text: str | bytes, path: str = "data") -> Any:
        """Rebuild a value from JSON text written by :meth:`dumps`."""
        try:
            primitive = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            try:  # orjson refuses very deep nesting; the standard library does not
                primitive = json.loads(text)
            except (ValueError, RecursionError):
                raise SerializationError(f"stored text is not valid JSON: {exc}", path) from exc
        return self.from_primitive(primitive, path)

    def loads_or_undecodable(self, text: str | bytes, path: str = "data") -> Any:
        """:meth:`loads`, but stored data that cannot be rebuilt here (a type that is not
        registered, a registered class that no longer fits, a malformed stored form)
        comes back as an :class:`Undecodable` holding ``text`` and the reason instead of
        raising."""
        try:
            return self.loads(text, path)
        except SerializationError as exc:
            raw = text.decode() if isinstance(text, bytes) else text
            return Undecodable(raw, str(exc))

    def from_primitive_or_undecodable(self, value: JSONValue, path: str = "data") -> Any:
        """:meth:`from_primitive`, but a stored form that cannot be rebuilt here comes back
        as an :class:`Undecodable` (its ``raw`` is ``value`` as JSON text) instead of
        raising."""
        try:
            return self.from_primitive(value, path)
        except SerializationError as exc:
            try:
                raw = _json_text(value)
            except (TypeError, ValueError, RecursionError):
                raise exc from None
            return Undecodable(raw, str(exc))

    def copy(self, value: Any, path: str = "data") -> Any:
        """Return a faithful deep copy of ``value`` (what storing and loading it gives)."""
        return self.from_primitive(self.to_primitive(value, path), path)


_default_registry = TypeRegistry()

default_serializer = Serializer(_default_registry)
"""The process-wide serializer; its registry is the one :func:`register_type` fills."""


def register_type(*types: type) -> None:
    """Allow ``types`` (and the user types their fields name) to be rebuilt from stored data."""
    default_serializer.register(*types)
