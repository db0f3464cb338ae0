// Stand-ins for the four Python C-API symbols CPython's `_ctypes_test` helper imports, so
// that an ffibox worker (which has no libpython) can load that helper. run.py compiles this
// file into a shared library that also names `_ctypes_test` as a dependency (DT_NEEDED):
//
//   gcc -shared -fPIC -o python_stubs.so python_stubs.c \
//       -Wl,--no-as-needed /usr/lib/python3.11/lib-dynload/_ctypes_test.cpython-311-...so
//
// Why this works: the worker dlopens every library RTLD_LOCAL and ignores `mode`, so a stub
// library loaded RTLD_GLOBAL beforehand is not an option. But the dependencies of a dlopen'ed
// library are relocated against that library's whole dependency tree, this library included,
// so `_ctypes_test`'s undefined PyArg_ParseTuple & co. bind to the definitions below. Once
// this library is loaded in the session (run_module.py loads it before the test module), the
// suite's own `CDLL(_ctypes_test.__file__)` finds the helper already mapped (the dynamic
// loader recognises the file by device and inode) and gets it without another relocation;
// a restarted worker reloads the session's libraries in order, stubs first.
//
// Nothing the suite calls through CDLL reaches these: they serve the helper's Python module
// (PyInit__ctypes_test and its methods), and `_testfunc_pylist_append` is a thin wrapper of
// PyList_Append that the suite calls only through PyDLL, which ffibox does not offer. Each
// stub fails the way its real counterpart reports an error.

// Only the address of None is taken (Py_RETURN_NONE); no code reads it in a worker.
char _Py_NoneStruct[16];

// "Arguments did not parse": 0.
int PyArg_ParseTuple(void *args, const char *format, ...) {
  (void)args;
  (void)format;
  return 0;
}

// "Append failed": -1.
int PyList_Append(void *list, void *item) {
  (void)list;
  (void)item;
  return -1;
}

// "Module initialisation failed": NULL.
void *PyModuleDef_Init(void *definition) {
  (void)definition;
  return 0;
}
