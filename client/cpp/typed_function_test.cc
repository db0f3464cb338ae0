// The typed function machinery for the signatures the client supports, compiled end to end.
#include "client/cpp/typed_function.h"

#include <optional>
#include <string>

#include "client/cpp/values.h"

// Instantiating every member checks that these signatures compile end to end.
namespace ffibox {
template class TypedFunction<double(double)>;
template class TypedFunction<int(int, int, int*, int*)>;
template class TypedFunction<void(Buffer&, size_t, char)>;
template class TypedFunction<size_t(const Buffer*, size_t)>;
template class TypedFunction<std::optional<std::string>()>;
template class TypedFunction<std::string(const char*)>;
template class TypedFunction<std::wstring()>;
template class TypedFunction<size_t(const wchar_t*)>;
template class TypedFunction<void*(void*, long)>;
template class TypedFunction<long double(long double)>;
template class TypedFunction<void(int&)>;
}  // namespace ffibox
