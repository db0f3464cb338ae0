"""Settings the Python client reads from the environment, each where it applies. A value
that means nothing is refused with a ValueError naming the variable, never taken for the
default (FFIBOX_SAME_HOST=off must not leave the channel on)."""
import os
from typing import Optional

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def flag(name: str) -> Optional[bool]:
    """$name as a yes or no: None when it is unset or empty (the default applies)."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError("$%s is %r: expected 1 or 0 (or true/false, yes/no, on/off)"
                     % (name, value))


def seconds(name: str) -> Optional[float]:
    """$name as a positive number of seconds (3, 0.5); None when it is unset or empty."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not 0 < number < float("inf"):
        raise ValueError("$%s is %r: expected a positive number of seconds" % (name, value))
    return number


def count(name: str, default: int) -> int:
    """$name as a whole number of at least 1; `default` when it is unset or empty."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError("$%s is %r: expected a whole number of at least 1" % (name, value))
    return number
