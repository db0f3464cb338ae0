"""Settings the Python client reads from the environment, each where it applies. A value
that means nothing is refused with a ValueError naming the variable, never taken for the
default (FFIBOX_SAME_HOST=off must not leave the channel on)."""
import math
import os
from typing import Iterable, List, Optional

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


# The longest deadline the protocol carries: a uint32 of milliseconds (about 49 days).
MOST_SECONDS = ((1 << 32) - 1) / 1000.0


def seconds(name: str) -> Optional[float]:
    """$name as a positive number of seconds (3, 0.5) up to MOST_SECONDS; None when it is
    unset or empty."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not 0 < number <= MOST_SECONDS:
        raise ValueError("$%s is %r: expected a positive number of seconds, at most %d"
                         % (name, value, MOST_SECONDS))
    return number


def milliseconds(timeout: Optional[float], what: str) -> int:
    """A deadline of `timeout` seconds as the protocol's milliseconds: 0 (the server's
    default) for None or 0, else at least 1 (a deadline under a millisecond is one, not the
    server's 30 s). ValueError naming `what` for a negative, infinite or longer one."""
    if not timeout:
        return 0
    if not 0 < timeout <= MOST_SECONDS:
        raise ValueError("%s must be a positive number of seconds, at most %d, not %r"
                         % (what, MOST_SECONDS, timeout))
    return max(1, math.ceil(timeout * 1000))


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


_BINARY_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def byte_count(name: str, least: int) -> Optional[int]:
    """$name as a number of bytes of at least `least`, with an optional binary unit (512M,
    4G, 1T, or 4GiB); None when it is unset or empty."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    text = value.upper()
    if text.endswith("IB"):
        text = text[:-2]
    unit = text[-1:] if text[-1:] in _BINARY_UNITS else ""
    number = text[:len(text) - len(unit)].strip()
    if number.isascii() and number.isdigit() and int(number) * _BINARY_UNITS[unit] >= least:
        return int(number) * _BINARY_UNITS[unit]
    raise ValueError("$%s is %r: expected a number of bytes of at least %d MiB (such as 8G or "
                     "512M)" % (name, value, least >> 20))


def memory_limit() -> Optional[int]:
    """$FFIBOX_MEMORY_LIMIT: the memory cap of a session that names none, in bytes, and of
    the private server's sessions (its --session_memory_bytes: it may raise its default of
    4 GiB); at least 32 MiB, the least a server's cap may be."""
    return byte_count("FFIBOX_MEMORY_LIMIT", 32 << 20)


# The jail layers a server may report (SessionOpened.jail_layers, docs/protocol.md).
JAIL_LAYERS = ("user", "pid", "net", "ipc", "uts", "mount", "filesystem", "proc", "cgroup",
               "seccomp", "no_new_privs", "rlimits")


def required_jail_layers(names: Optional[Iterable[str]]) -> List[str]:
    """The layers `names` requires ($FFIBOX_REQUIRE_JAIL, comma-separated, when None), "all"
    standing for every one. A name that is no layer is a ValueError: misspelt, it would
    read as a layer the server lacks."""
    source = "require_jail"
    if names is None:
        source = "$FFIBOX_REQUIRE_JAIL"
        names = [name.strip() for name in os.environ.get("FFIBOX_REQUIRE_JAIL", "").split(",")
                 if name.strip()]
    elif isinstance(names, str):
        raise TypeError("require_jail must be a list of layer names, not the string %r"
                        % (names,))
    layers: List[str] = []
    for name in names:
        if name == "all":
            layers.extend(JAIL_LAYERS)
        elif name in JAIL_LAYERS:
            layers.append(name)
        else:
            raise ValueError("%s: no jail layer is called %r (the layers: %s, or all)"
                             % (source, name, ", ".join(JAIL_LAYERS)))
    return layers
