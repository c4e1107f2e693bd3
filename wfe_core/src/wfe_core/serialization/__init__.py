"""Type-faithful serialization of workflow data and event data.

Workflow data and event data are user objects: dataclasses, pydantic models, dicts and
primitives. :class:`Serializer` turns them into plain JSON values (``to_primitive``) or
JSON text (``dumps``) and back, with their types intact: a ``Decimal`` with 18 places
keeps its digits and exponent, a ``datetime`` keeps its offset (or its naivety), a
``tuple`` stays a tuple, a dict with ``int`` keys keeps them.

Stored form
-----------
Plain JSON values stay plain so the stored form is readable: ``None``, ``bool``, ``str``,
``int`` (64-bit), finite ``float``, ``list`` and ``dict`` with ``str`` keys. Anything else
is a tagged object ``{"$wfe": <kind>, "v": <payload>}`` (plus ``"t": <type tag>`` for user
types). A user dict that has a ``"$wfe"`` key of its own, or a key that is not a ``str``,
is stored as a tagged list of pairs, so it round-trips too. Strings holding NUL or lone
surrogates (which JSON stores such as PostgreSQL ``jsonb`` refuse) are tagged as well,
so the output of :meth:`Serializer.dumps` can be stored anywhere.

Security
--------
Dataclasses, pydantic models and ``Enum`` types are rebuilt only if their type is in the
serializer's :class:`TypeRegistry` (an allowlist). A type tag read from the store is only
ever *looked up* there: nothing is imported and no class is resolved by name, so a row
written by someone else cannot make the process import or build an arbitrary class.
Registering a type also registers the types reachable through its field annotations, and
:meth:`Serializer.to_primitive` registers the types it is handed (the application trusts
them), so a process that wrote a value can always read it back.

Refusal
-------
A value that cannot be stored faithfully (a lambda, a socket, a generator, a float dict
key, ...) is refused by ``to_primitive`` / ``dumps`` with a
:class:`~wfe_core.errors.SerializationError` whose ``path`` names the field, e.g.
``data.items[2].price`` or ``data["key"]``; nothing is partially returned.

Undecodable stored data
-----------------------
Stored data that this process cannot rebuild (it names a type that is not registered
here, or one whose registered class no longer fits the stored fields) must not stop
reads: :meth:`Serializer.loads_or_undecodable` and
:meth:`Serializer.from_primitive_or_undecodable` return an :class:`Undecodable` holding
the stored JSON text and the reason instead of raising. Encoding an ``Undecodable``
gives back exactly what was stored (``dumps`` returns ``raw`` verbatim), so saving an
instance that holds one never changes or loses the stored data. Providers decode user
values this way; :func:`has_undecodable` tells whether an instance holds one.
"""

from wfe_core.serialization._common import JSONValue
from wfe_core.serialization.serializer import Serializer, default_serializer, register_type
from wfe_core.serialization.type_registry import TypeRegistry
from wfe_core.serialization.undecodable import Undecodable, has_undecodable, undecodable_fields

__all__ = [
    "JSONValue",
    "Serializer",
    "TypeRegistry",
    "Undecodable",
    "default_serializer",
    "has_undecodable",
    "register_type",
    "undecodable_fields",
]
