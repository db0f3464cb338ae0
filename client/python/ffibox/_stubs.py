"""The generated protocol stubs, imported once (see the package docstring for where from)."""
try:
    from ffibox.v1 import ffibox_pb2 as pb
    from ffibox.v1 import ffibox_pb2_grpc as pb_grpc
except ImportError as error:  # pragma: no cover - depends on the build
    raise ImportError(
        "ffibox: the generated stubs ffibox/v1/ffibox_pb2.py were not found; install the "
        "package (pip install ./client/python, docs/install.md), or in a checkout build them "
        "with `bazel build //proto:ffibox_py` (or set FFIBOX_PROTO_PATH to a directory holding "
        "ffibox/v1/ffibox_pb2.py)") from error

__all__ = ["pb", "pb_grpc"]
