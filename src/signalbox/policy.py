"""How a background receiver is retried: the options of ``run="background"``.

``Policy.from_options`` turns the keyword arguments given to ``receiver()`` /
``connect()`` into a checked, frozen value, raising
:class:`~signalbox.ReceiverError` naming any option that is wrong.

The retry curve is exponential with full jitter, capped: after attempt *n*
fails, the next one waits a random time between 0 and
``min(backoff.cap, backoff.base * 2 ** (n - 1))``. With the defaults (base 2 s,
cap 1 h, 20 attempts) the first retries come within seconds, the ceiling
reaches an hour at attempt 12, and the 20 attempts span about four hours on
average.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from signalbox import _forks
from signalbox import _travel as travel
from signalbox.exceptions import ReceiverError

DEFAULT_ATTEMPTS: Final = 20


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter, capped at ``cap``."""

    base: timedelta = timedelta(seconds=2)
    cap: timedelta = timedelta(hours=1)

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """How long to wait after attempt number ``attempt`` (1-based) failed."""
        doublings = min(max(attempt - 1, 0), 64)  # past the cap long before
        ceiling = min(
            self.cap.total_seconds(), self.base.total_seconds() * 2**doublings
        )
        return timedelta(seconds=ceiling * (rng or _rng).random())


_rng = random.Random()  # noqa: S311 - jitter, not security
# A forked child (Celery's pool, a pre-forking web server) would otherwise
# draw the parent's sequence: every process's retries of a burst would land
# together, which is what the jitter is there to prevent. Seeded afresh (from
# the OS) in each child, as the random module does for its own generator.
_forks.renew_in_children(_rng, random.Random.seed)

_Exceptions = tuple[type[BaseException], ...]


@dataclass(frozen=True, slots=True)
class Policy:
    """The options of one background receiver."""

    engine: str = "default"
    queue: str = "default"
    priority: int = 0
    max_attempts: int = DEFAULT_ATTEMPTS
    backoff: Backoff = field(default_factory=Backoff)
    retry_on: _Exceptions = (Exception,)
    dont_retry_on: _Exceptions = ()
    delay: timedelta | None = None
    timeout: timedelta | None = None
    atomic: bool = False

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Policy:
        """Check ``options`` (``receiver()``'s keywords) and build the policy."""
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ReceiverError(
                f"run='background' has no option {', '.join(unknown)}; "
                f"its options are {', '.join((*_OPTIONS, *travel.OPTIONS))}."
            )
        values = {name: _OPTIONS[name](name, value) for name, value in options.items()}
        if "retries" in values:
            values["max_attempts"] = values.pop("retries")
        return cls(**values)

    def retries(self, error: BaseException) -> bool:
        """Whether ``error`` should be retried (if attempts are left)."""
        return isinstance(error, self.retry_on) and not isinstance(
            error, self.dont_retry_on
        )


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise ReceiverError(
            f"{name} must be a non-empty string of at most 64 characters, "
            f"not {value!r}."
        )
    return value


def _integer(low: int, high: int) -> Any:
    def check(name: str, value: object) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not low <= value <= high
        ):
            raise ReceiverError(
                f"{name} must be an integer from {low} to {high}, not {value!r}."
            )
        return value

    return check


def _duration(name: str, value: object) -> timedelta | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = timedelta(seconds=value)
    if not isinstance(value, timedelta) or value < timedelta(0):
        raise ReceiverError(
            f"{name} must be a timedelta (or seconds) >= 0, not {value!r}."
        )
    return value


def _exceptions(name: str, value: object) -> _Exceptions:
    types = value if isinstance(value, tuple | list) else (value,)
    if not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
        raise ReceiverError(
            f"{name} must be an exception class or a tuple of them, not {value!r}."
        )
    return tuple(types)


def _backoff(name: str, value: object) -> Backoff:
    if not isinstance(value, Backoff):
        raise ReceiverError(
            f"{name} must be a signalbox.Backoff(base=..., cap=...), not {value!r}."
        )
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ReceiverError(f"{name} must be True or False, not {value!r}.")
    return value


_OPTIONS: Final = {
    "engine": _text,
    "queue": _text,
    "priority": _integer(-32768, 32767),
    "retries": _integer(1, 1000),
    "backoff": _backoff,
    "retry_on": _exceptions,
    "dont_retry_on": _exceptions,
    "delay": _duration,
    "timeout": _duration,
    "atomic": _flag,
}
