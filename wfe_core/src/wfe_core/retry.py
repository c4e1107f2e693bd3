"""Retry policies and the engine's one back-off helper.

:class:`RetryPolicy` says how a failing step is retried: after ``initial_interval``,
growing by ``backoff_coefficient`` per attempt up to ``maximum_interval``, at most
``maximum_attempts`` attempts in all, each delay shortened by up to ``jitter`` of
itself at random, and never for the error types in ``non_retryable``.

:func:`backoff_delay` (and the :class:`Backoff` iterator over it) is the single place
where the engine computes a growing, capped, jittered delay: the step retries of a
pass and every loop that backs off while a service is down or a lock is busy.

A leaf module: it imports nothing from wfe_core but :mod:`wfe_core.errors`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from wfe_core.errors import DefinitionError

__all__ = ["Backoff", "RetryPolicy", "backoff_delay"]

_rng = random.Random()


def backoff_delay(
    attempt: int,
    initial: float,
    coefficient: float = 2.0,
    maximum: float | None = None,
    jitter: float = 0.0,
    *,
    rng: random.Random | None = None,
) -> float:
    """The delay in seconds before retry number ``attempt`` (1 for the first retry).

    The undisturbed delay is ``initial * coefficient ** (attempt - 1)``, capped at
    ``maximum`` (when given). ``jitter`` (0..1) then shortens it by a random fraction
    of up to ``jitter`` of itself: the result lies in ``[d * (1 - jitter), d]``, so it
    never exceeds the cap and many waiters started together spread out. ``rng``
    (a seeded ``random.Random``) makes the jitter reproducible in tests."""
    if attempt < 1:
        attempt = 1
    if initial <= 0:
        return 0.0
    delay = initial
    if coefficient != 1.0:
        # grow step by step so a huge attempt number never overflows a float power
        for _ in range(attempt - 1):
            delay *= coefficient
            if maximum is not None and delay >= maximum:
                break
    if maximum is not None and delay > maximum:
        delay = maximum
    if jitter > 0.0:
        delay -= delay * jitter * (rng or _rng).random()
    return delay


class Backoff:
    """A loop's growing delays: ``next(backoff)`` gives the next one (see
    :func:`backoff_delay`), ``reset()`` starts over after a success.

    ``for``-free use reads::

        wait = Backoff(0.005, maximum=0.1, jitter=0.2)
        while not await try_it():
            await asyncio.sleep(next(wait))
    """

    __slots__ = ("attempt", "coefficient", "initial", "jitter", "maximum", "rng")

    def __init__(
        self,
        initial: float,
        coefficient: float = 2.0,
        maximum: float | None = None,
        jitter: float = 0.2,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = initial
        self.coefficient = coefficient
        self.maximum = maximum
        self.jitter = jitter
        self.rng = rng
        self.attempt = 0
        """How many delays were handed out since the start (or the last reset)."""

    def __iter__(self) -> Backoff:
        return self

    def __next__(self) -> float:
        self.attempt += 1
        return backoff_delay(
            self.attempt, self.initial, self.coefficient, self.maximum, self.jitter, rng=self.rng
        )

    def reset(self) -> None:
        """Start again from ``initial`` (the service answers again)."""
        self.attempt = 0


def _positive(value: object, what: str) -> timedelta:
    if not isinstance(value, timedelta):
        raise DefinitionError(f"RetryPolicy: {what} must be a timedelta, not {value!r}")
    if value <= timedelta(0):
        raise DefinitionError(f"RetryPolicy: {what} must be positive, not {value}")
    return value


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing step is retried.

    - ``initial_interval``: the wait before the first retry (positive).
    - ``backoff_coefficient``: each further wait is this many times the one before
      (``>= 1``; 1 keeps the wait constant).
    - ``maximum_interval``: no wait is longer (None: no cap).
    - ``maximum_attempts``: attempts in all, the first run included (None: retry for
      ever; 1: never retry). When they are used up the step *fails*: it is compensated
      when something can compensate it (its own compensation, an enclosing saga or
      block), else the workflow terminates.
    - ``jitter``: 0..1, the fraction of each wait that is randomised: a wait ``d`` is
      drawn uniformly from ``[d * (1 - jitter), d]`` (0: exact waits).
    - ``non_retryable``: exception types (subclasses included) that are never retried:
      the step fails at once, exactly as when its attempts are used up.

    Use it per step (``.retry_policy(RetryPolicy(...))`` in the builder) or as a
    definition's default (``retry_policy = RetryPolicy(...)`` on the ``Workflow``
    class), which applies to every step that sets no retry settings of its own.
    """

    initial_interval: timedelta = timedelta(seconds=1)
    backoff_coefficient: float = 2.0
    maximum_interval: timedelta | None = timedelta(minutes=5)
    maximum_attempts: int | None = None
    jitter: float = 0.1
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        _positive(self.initial_interval, "initial_interval")
        coefficient = self.backoff_coefficient
        if (
            isinstance(coefficient, bool)
            or not isinstance(coefficient, int | float)
            or not coefficient >= 1.0
        ):
            raise DefinitionError(
                f"RetryPolicy: backoff_coefficient must be a number >= 1, not {coefficient!r}"
            )
        if self.maximum_interval is not None:
            _positive(self.maximum_interval, "maximum_interval")
            if self.maximum_interval < self.initial_interval:
                raise DefinitionError(
                    f"RetryPolicy: maximum_interval ({self.maximum_interval}) is shorter than "
                    f"initial_interval ({self.initial_interval})"
                )
        attempts = self.maximum_attempts
        if attempts is not None and (
            isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
        ):
            raise DefinitionError(
                "RetryPolicy: maximum_attempts must be an int >= 1 (attempts in all, the "
                f"first included) or None for no limit, not {attempts!r}"
            )
        jitter = self.jitter
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter <= 1:
            raise DefinitionError(f"RetryPolicy: jitter must be between 0 and 1, not {jitter!r}")
        non_retryable: object = self.non_retryable
        if isinstance(non_retryable, type):
            non_retryable = (non_retryable,)
            object.__setattr__(self, "non_retryable", non_retryable)
        if not isinstance(non_retryable, tuple | list):
            raise DefinitionError(
                "RetryPolicy: non_retryable must be a tuple of exception classes, "
                f"not {non_retryable!r}"
            )
        for t in non_retryable:
            if not (isinstance(t, type) and issubclass(t, BaseException)):
                raise DefinitionError(
                    f"RetryPolicy: non_retryable holds {t!r}, which is not an exception class"
                )
        object.__setattr__(self, "non_retryable", tuple(non_retryable))

    def retries(self, error: BaseException) -> bool:
        """Whether ``error`` may be retried at all (not one of ``non_retryable``)."""
        return not isinstance(error, self.non_retryable)

    def exhausted(self, retries_done: int) -> bool:
        """Whether no attempt is left after ``retries_done`` retries (plus the first
        run)."""
        return self.maximum_attempts is not None and retries_done + 1 >= self.maximum_attempts

    def delay(self, retry: int, *, rng: random.Random | None = None) -> timedelta:
        """The wait before retry number ``retry`` (1 for the first retry)."""
        maximum = self.maximum_interval
        seconds = backoff_delay(
            retry,
            self.initial_interval.total_seconds(),
            float(self.backoff_coefficient),
            maximum.total_seconds() if maximum is not None else None,
            float(self.jitter),
            rng=rng,
        )
        return timedelta(seconds=seconds)
