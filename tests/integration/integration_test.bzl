"""The shape of every integration test: a real ffiboxd, real workers, real test libraries."""

INTEGRATION_DATA = [
    "//client/cli:ffibox",
    "//server:ffibox-worker",
    "//server:ffiboxd",
    "//tests/testlibs:libffibox_test.so",
]

INTEGRATION_DEPS = [
    "//client/cpp:ffibox_client",
    "//core:errors",
    "//core:test_types",
    "//tests/support:session_fixture",
    "//tests/support:status_matchers",
    "//tests/support:test_server",
    "//third_party:absl",
    "//third_party:gtest_main",
]

def integration_test(name, data = [], deps = [], tags = []):
    """A cc_test `name` built from `name`.cc with the servers, the CLI and the test library."""
    native.cc_test(
        name = name,
        size = "medium",
        srcs = [name + ".cc"],
        data = INTEGRATION_DATA + data,
        deps = INTEGRATION_DEPS + deps,
        tags = tags,
    )
