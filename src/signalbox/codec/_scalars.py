"""Values that hold no others, written and read: str, bytes, numbers beyond
JSON's, datetimes, times, time zones and timedeltas; and the checks that read
a JSON value's shape.

Reading any of them costs time in proportion to its text at most: numbers
have bounds on their digits and exponents, checked on the text before it is
converted, and ``encode()`` refuses what lies beyond them at ``send()`` time.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo

from signalbox.codec._base import (
    _MAX_DIGITS,
    _MAX_FLOAT_TEXT,
    _MAX_INT_BITS,
    TAG,
    _kind,
    _Problem,
    _show,
    _tag,
)

R = TypeVar("R")
Clock = TypeVar("Clock", datetime, time)

_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")
# IANA names only: zoneinfo may look a key up as a tzdata.zoneinfo package.
_ZONE_KEY: Final = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")


# Decimals: PostgreSQL's numeric declares at most 1000 digits, and converting
# one this size to an int (as Django does for an integer pk) takes under a
# millisecond, where 1e300000 takes minutes.
_DECIMAL_DIGITS: Final = 1000
_DECIMAL_MAGNITUDE: Final = 1000
_DECIMAL_TEXT: Final = _DECIMAL_DIGITS + 16  # sign, point, "E-1000", "sNaN"
_INT_BOUND: Final = f"ints of up to {_MAX_DIGITS} digits travel"
_DECIMAL_BOUND: Final = (
    f"Decimals of up to {_DECIMAL_DIGITS} digits, between 1E-{_DECIMAL_MAGNITUDE} "
    f"and 1E+{_DECIMAL_MAGNITUDE} in size, travel"
)

# --- writing ----------------------------------------------------------------------


def _storable(text: str) -> bool:
    if text.isascii():
        return "\x00" not in text
    return _UNSTORABLE.search(text) is None


def _encode_str(text: str) -> Any:
    if _storable(text):
        return text
    return _tag("str", _b64(text.encode("utf-8", "surrogatepass")))


def _encode_int(value: int) -> Any:
    """An int beyond 64 bits, as hex; refused beyond :data:`_MAX_INT_BITS`."""
    if value.bit_length() > _MAX_INT_BITS:
        raise _Problem(
            f"found an int of over {_MAX_DIGITS} digits; {_INT_BOUND} (Python's "
            f"own limit for str(int)), so pass it as bytes or hex(value)"
        )
    return _tag("int", hex(value))


def _encode_decimal(value: Decimal) -> Any:
    text = str(value)
    if _out_of_bounds(value, text):
        raise _Problem(f"found a Decimal out of bounds; {_DECIMAL_BOUND}")
    return _tag("decimal", text)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _encode_clock(tag: str, value: datetime | time) -> Any:
    wall = value.replace(tzinfo=None).isoformat()
    return _tag(tag, [wall, _encode_tz(value.tzinfo), value.fold])


def _encode_tz(tz: tzinfo | None) -> Any:
    if tz is None:
        return None
    if type(tz) is ZoneInfo and tz.key is not None:
        return tz.key
    if type(tz) is timezone:
        offset, name = tz.utcoffset(None), tz.tzname(None)
        default = name == timezone(offset).tzname(None)
        return [
            offset // timedelta(microseconds=1),
            None if default else _encode_str(name),
        ]
    raise _Problem(
        f"found a time zone of type {_kind(tz)}; use a zoneinfo.ZoneInfo made "
        f"from a key, or a datetime.timezone"
    )


# --- reading ----------------------------------------------------------------------


def _text(data: Any) -> str:
    """A str :func:`_encode_str` wrote: itself, or tagged."""
    if type(data) is str:
        return data
    if type(data) is dict and data.get(TAG) == "str" and len(data) == 2:
        return _decode_str(data.get("v"), 0)
    raise _Problem(f"found a {_kind(data)} where a str belongs")


def _parts(data: Any, count: int) -> list[Any]:
    if type(data) is not list or len(data) != count:
        raise _Problem(f"found {_show(data)} where a list of {count} belongs")
    return data


def _parsed(
    parse: Callable[[str], R], data: Any, what: str, longest: int | None = None
) -> R:
    """``parse(data)`` for a str ``data``; any complaint becomes a _Problem.

    ``longest`` refuses longer text before ``parse`` sees it.
    """
    if type(data) is not str:
        raise _Problem(f"found a {_kind(data)} where {what} belongs")
    if longest is not None and len(data) > longest:
        raise _Problem(f"{_show(data)} is too long for {what}")
    try:
        return parse(data)
    except (ArithmeticError, ValueError) as error:
        raise _Problem(f"{_show(data)} is not {what}") from error


def _unb64(data: str) -> bytes:
    return base64.b64decode(data, validate=True)


def _decode_str(data: Any, depth: int) -> str:
    raw = _parsed(_unb64, data, "base64")
    return _parsed(lambda _: raw.decode("utf-8", "surrogatepass"), data, "UTF-8")


def _decode_int(data: Any, depth: int) -> int:
    # Hex is read in linear time, but the int then goes where str(int) and
    # int(str) are refused beyond the same digits: stop it here, clearly.
    value = _parsed(lambda t: int(t, 16), data, "a hex integer", _MAX_DIGITS)
    if value.bit_length() > _MAX_INT_BITS:
        raise _Problem(f"{_show(data)} is out of bounds; {_INT_BOUND}")
    return value


def _decode_float(data: Any, depth: int) -> float:
    return _parsed(float, data, "a float", _MAX_FLOAT_TEXT)


def _decode_decimal(data: Any, depth: int) -> Decimal:
    value = _parsed(Decimal, data, "a decimal", _DECIMAL_TEXT)
    if _out_of_bounds(value, data):
        raise _Problem(f"{_show(data)} is out of bounds; {_DECIMAL_BOUND}")
    return value


def _out_of_bounds(value: Decimal, text: str | None = None) -> bool:
    """Whether ``value`` has more digits, or a larger or smaller leading digit's
    power of ten, than may travel; ``text``, its str, spares counting digits
    when it is short. (NaN and the infinities count as 1E+0.)
    """
    if not -_DECIMAL_MAGNITUDE <= value.adjusted() <= _DECIMAL_MAGNITUDE:
        return True
    if text is not None and len(text) <= _DECIMAL_DIGITS:
        return False
    return len(value.as_tuple().digits) > _DECIMAL_DIGITS


def _decode_timedelta(data: Any, depth: int) -> timedelta:
    parts = _parts(data, 3)
    if any(type(part) is not int for part in parts):
        raise _Problem(
            f"found {_show(data)} where [days, seconds, microseconds] belongs"
        )
    try:
        return timedelta(*parts)
    except OverflowError as error:
        raise _Problem(f"{_show(data)} is not a timedelta") from error


def _decode_clock(cls: type[Clock]) -> Callable[[Any, int], Clock]:
    def decode(data: Any, depth: int) -> Clock:
        wall, tz, fold = _parts(data, 3)
        clock = _parsed(cls.fromisoformat, wall, f"an ISO {cls.__name__}")
        if clock.tzinfo is not None or type(fold) is not int or fold not in (0, 1):
            raise _Problem(f"found {_show(data)} where a {cls.__name__} belongs")
        return clock.replace(tzinfo=_decode_tz(tz), fold=fold)

    return decode


def _decode_tz(data: Any) -> tzinfo | None:
    if data is None:
        return None
    if type(data) is str:
        return _zone(data)
    offset, name = _parts(data, 2)
    if type(offset) is not int or abs(offset) >= 86_400_000_000:
        raise _Problem(f"found {_show(data)} where a UTC offset belongs")
    if name is None:
        return timezone(timedelta(microseconds=offset))
    return timezone(timedelta(microseconds=offset), _text(name))


def _zone(key: str) -> ZoneInfo:
    if not _ZONE_KEY.fullmatch(key):
        raise _Problem(f"{_show(key)} is not a time zone name")
    try:
        return ZoneInfo(key)
    except (KeyError, ValueError, OSError) as error:
        raise _Problem(f"{_show(key)} is not a time zone this system knows") from error
