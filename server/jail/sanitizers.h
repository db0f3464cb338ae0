// What a sanitizer build of ffiboxd and ffibox-worker changes in the jail (bazel test
// --config=asan; docs/architecture.md, "Sanitizers").
//
// AddressSanitizer reserves terabytes of address space for its shadow memory at startup, so
// RLIMIT_AS cannot cap an ASan worker: in such a build the session's memory cap is its
// cgroup's alone (server/jail/cgroups.h), and neither the worker nor the broker sets
// RLIMIT_AS. Nothing else of the jail changes.
#ifndef FFIBOX_SERVER_JAIL_SANITIZERS_H_
#define FFIBOX_SERVER_JAIL_SANITIZERS_H_

namespace ffibox {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#else
inline constexpr bool kAddressSanitizer = false;
#endif

// Whether RLIMIT_AS can be set on a worker of this build.
inline constexpr bool kAddressSpaceLimitApplies = !kAddressSanitizer;

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_SANITIZERS_H_
