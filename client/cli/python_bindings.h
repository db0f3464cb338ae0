// Prints a HeaderModel as a Python module for `from ffibox import ctypes`
// (`ffibox bindgen --lang=python`).
//
// The module loads the library with `ctypes.CDLL(library)` in the default session and
// defines, in dependency order: macro and enum constants, Structure / Union classes (fields,
// `_anonymous_`, `_pack_`, bit fields as clang laid them out; incomplete structs without
// fields), typedefs as aliases, function pointer types as CFUNCTYPE, the functions with
// argtypes / restype (`variadic = True` where the header has `...`), and exported variables
// through `ctypes.in_dll`. A function or variable the library does not export is None. Each
// complete record's clang layout (size, alignment, bit offset of every field) is checked once,
// when the module is imported, against ctypes' and the worker's (`Session.expect_layout`).
// The output depends only on the model and `library`.
#ifndef FFIBOX_CLIENT_CLI_PYTHON_BINDINGS_H_
#define FFIBOX_CLIENT_CLI_PYTHON_BINDINGS_H_

#include <string>

#include "client/cli/header_model.h"

namespace ffibox {
namespace cli {

// The Python module for `model`, loading `library` (a path or soname).
std::string PythonBindings(const HeaderModel& model, const std::string& library);

}  // namespace cli
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CLI_PYTHON_BINDINGS_H_
