/* Calls a function it does not define and whose library it does not link
 * (libffibox_global_provider.so): loadable only after that library was loaded with
 * RTLD_GLOBAL. */
int ffibox_global_answer(void);

int ask_global_answer(void) { return ffibox_global_answer(); }
