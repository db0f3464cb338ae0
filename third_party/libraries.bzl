"""Debian 12's system libraries by name: linked shared by default, or from their static
archives where a binary's start-up time matters (//server:ffibox-worker)."""

# Abseil's libraries in link order (each before the ones it uses).
ABSL_LIBRARIES = [
    "absl_flags_parse",
    "absl_flags_usage",
    "absl_flags_usage_internal",
    "absl_flags_internal",
    "absl_flags_marshalling",
    "absl_flags_reflection",
    "absl_flags_private_handle_accessor",
    "absl_flags_commandlineflag",
    "absl_flags_commandlineflag_internal",
    "absl_flags_config",
    "absl_flags_program_name",
    "absl_statusor",
    "absl_status",
    "absl_cord",
    "absl_cordz_info",
    "absl_cord_internal",
    "absl_cordz_functions",
    "absl_cordz_handle",
    "absl_exponential_biased",
    "absl_str_format_internal",
    "absl_synchronization",
    "absl_graphcycles_internal",
    "absl_stacktrace",
    "absl_symbolize",
    "absl_debugging_internal",
    "absl_demangle_internal",
    "absl_malloc_internal",
    "absl_time",
    "absl_civil_time",
    "absl_time_zone",
    "absl_strings",
    "absl_strings_internal",
    "absl_int128",
    "absl_throw_delegate",
    "absl_raw_hash_set",
    "absl_hash",
    "absl_city",
    "absl_low_level_hash",
    "absl_hashtablez_sampler",
    "absl_bad_optional_access",
    "absl_bad_variant_access",
    "absl_strerror",
    "absl_base",
    "absl_spinlock_wait",
    "absl_raw_logging_internal",
    "absl_log_severity",
]

def shared_linkopts(libraries):
    """-l options that link `libraries` from their shared objects."""
    return ["-l" + library for library in libraries]

def static_linkopts(libraries):
    """Options that link `libraries` from their static archives (lib<name>.a), whatever
    their order, and drop the shared objects the deps' own -l options would add once
    nothing needs them. The archives' symbols are not exported: a library the binary
    dlopens that links the shared versions keeps its own copies whole."""
    return (["-Wl,--as-needed", "-Wl,--exclude-libs,ALL", "-Wl,--start-group"] +
            ["-l:lib%s.a" % library for library in libraries] +
            ["-Wl,--end-group"])
