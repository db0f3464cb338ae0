"""Checks whom the client is about to talk to on a unix socket, before it sends anything.

A unix socket has no TLS: whoever can put a socket where the client connects (another local
user who creates /tmp/ffibox-$UID first, say) would receive the arguments and could forge the
results. So every unix address is trusted only if it is this user's (effective uid) or root's,
by the rules of the C++ client (client/cpp/unix_server_check.h), with the same messages.
TCP addresses are not checked here.
"""
import os
import socket
import stat
import struct
import time

from ffibox.errors import Error, UntrustedServer

_UNIX = "unix:"
_UNIX_ABSTRACT = "unix-abstract:"
_RETRY_INTERVAL = 0.02  # seconds between looks for a socket that is not there yet


def _not_listening(address: str, why: str) -> Error:
    return Error("UNAVAILABLE: no ffiboxd at %s: %s" % (address, why), "UNAVAILABLE")


def _you_or_root(me: int) -> str:
    return "you (root)" if me == 0 else "you (uid %d) or root" % me


def _refuse(address: str, why: str) -> UntrustedServer:
    return UntrustedServer("PERMISSION_DENIED: refusing %s: %s" % (address, why))


def _check_directory(address: str, directory: str, me: int) -> None:
    try:
        st = os.lstat(directory)
    except (FileNotFoundError, NotADirectoryError):
        raise _not_listening(address, "directory %s does not exist" % directory) from None
    except OSError as error:
        raise _refuse(address, "cannot inspect directory %s: %s"
                      % (directory, error.strerror)) from None
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(address, "directory %s is a symbolic link; name the real directory"
                      % directory)
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(address, "%s is not a directory" % directory)
    if st.st_uid not in (me, 0):
        raise _refuse(address, "directory %s is owned by uid %d, not by %s"
                      % (directory, st.st_uid, _you_or_root(me)))
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise _refuse(address, "directory %s is writable by other users (mode %04o), so anyone "
                      "could have put the socket there" % (directory, stat.S_IMODE(st.st_mode)))


def _check_socket_file(address: str, path: str, me: int) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise _not_listening(address, "%s does not exist" % path) from None
    except OSError as error:
        raise _refuse(address, "cannot inspect %s: %s" % (path, error.strerror)) from None
    if not stat.S_ISSOCK(st.st_mode):
        raise _refuse(address, "%s is not a socket" % path)
    if st.st_uid not in (me, 0):
        raise _refuse(address, "socket %s is owned by uid %d, not by %s"
                      % (path, st.st_uid, _you_or_root(me)))


def _check_listener(address: str, path: str, abstract: bool, me: int, timeout: float) -> None:
    # Connects without sending anything: the kernel recorded the credentials of the process
    # that called listen() and hands them to every connecting peer (SO_PEERCRED).
    where = "abstract socket @" + path if abstract else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        wait = max(timeout, 0.001)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                         struct.pack("ll", int(wait), int((wait % 1) * 1e6)))
        try:
            probe.connect("\0" + path if abstract else path)
        except OSError as error:
            raise _not_listening(address, "cannot connect: %s"
                                 % (error.strerror or error)) from None
        try:
            pid, uid, _ = struct.unpack(
                "3i", probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                       struct.calcsize("3i")))
        except OSError as error:
            raise _refuse(address, "cannot tell which user listens on %s: %s"
                          % (where, error.strerror)) from None
    if uid not in (me, 0):
        raise _refuse(address, "the process listening on %s (pid %d) runs as uid %d, not as %s"
                      % (where, pid, uid, _you_or_root(me)))


def check_unix_server(address: str, timeout: float) -> None:
    """Checks that the server at gRPC target `address` belongs to this user or root.

    For `unix:PATH` (also `unix:///PATH`): PATH's directory is a real directory (not a
    symbolic link) owned by this user or root and writable by neither group nor others; PATH
    is a socket owned by this user or root; the process listening on it runs as this user or
    root (SO_PEERCRED of a probe connection on which nothing is sent). For
    `unix-abstract:NAME` only the listening process is checked. Other addresses pass.

    Raises UntrustedServer naming the path and its owner or mode when a check fails;
    ffibox.Error with code UNAVAILABLE when nothing listens within `timeout` seconds (a
    missing socket or a refused connection is retried until then); ffibox.Error with code
    INVALID_ARGUMENT for a unix address gRPC would read differently (with %, ? or #).
    """
    if address.startswith(_UNIX_ABSTRACT):
        path, abstract = address[len(_UNIX_ABSTRACT):], True
    elif address.startswith(_UNIX):
        path, abstract = address[len(_UNIX):], False
        if path.startswith("///"):  # gRPC reads unix:///PATH as a URI with no authority
            path = path[2:]
        elif path.startswith("//"):
            raise Error("INVALID_ARGUMENT: unix address with a host: %s; write unix:/PATH"
                        % address, "INVALID_ARGUMENT")
    else:
        return
    # gRPC percent-decodes the path and cuts it at ? and #: the check must see the file gRPC
    # will connect to.
    if not path or any(c in path for c in "%?#"):
        raise Error("INVALID_ARGUMENT: unsupported unix socket address (empty, or with '%%', "
                    "'?' or '#'): %s" % address, "INVALID_ARGUMENT")

    me = os.geteuid()
    deadline = time.monotonic() + timeout
    while True:
        try:
            if not abstract:
                directory = os.path.dirname(path) or "."
                _check_directory(address, directory, me)
                _check_socket_file(address, path, me)
            _check_listener(address, path, abstract, me, deadline - time.monotonic())
            return
        except UntrustedServer:
            raise
        except Error:  # nothing listens there (yet)
            if time.monotonic() + _RETRY_INTERVAL >= deadline:
                raise
        time.sleep(_RETRY_INTERVAL)
