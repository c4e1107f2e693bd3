"""The :class:`Workflow` base class: a workflow described in code.

It sits above both :mod:`wfe_core.definition` and :mod:`wfe_core.builder` (its
``build`` takes a :class:`~wfe_core.builder.WorkflowBuilder`), so neither of them has
to import the other back.
"""

from __future__ import annotations

import typing
from typing import Any, ClassVar, Generic, TypeVar

from wfe_core.builder import WorkflowBuilder
from wfe_core.retry import RetryPolicy

__all__ = ["Workflow"]

TData = TypeVar("TData")


class Workflow(Generic[TData]):
    """Base class of workflows: set ``id``, ``version``, ``data_type``; define ``build``.

    ``data_type`` is the class of the workflow's data (a dataclass, pydantic model,
    ``dict``...); ``start_workflow`` with no data builds ``data_type()``. When a
    subclass does not set it, it is taken from the type argument:
    ``class OrderWorkflow(Workflow[Order])`` has ``data_type = Order`` (a parametrised
    argument such as ``dict[str, Any]`` gives its origin, ``dict``).

    The type argument also types the builder: ``build(self, builder:
    WorkflowBuilder[Order])`` gets every data function of the chain (``key=``,
    ``if_``, ``input``...) checked against ``Order`` by a type checker.
    """

    id: ClassVar[str] = ""
    version: ClassVar[int] = 1
    data_type: ClassVar[type[Any] | None] = None
    description: ClassVar[str | None] = None
    retry_policy: ClassVar[RetryPolicy | None] = None
    """The default retry policy of the steps that set no retry settings of their own."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "data_type" in cls.__dict__:
            return
        for base in cls.__dict__.get("__orig_bases__", ()):
            if typing.get_origin(base) is Workflow:
                (argument,) = typing.get_args(base)
                concrete = typing.get_origin(argument) or argument
                if isinstance(concrete, type):
                    cls.data_type = concrete
                return

    def build(self, builder: WorkflowBuilder[TData]) -> None:
        """Describe the steps with the builder."""
        raise NotImplementedError(f"{type(self).__name__} must define build(self, builder)")
