/* A symbol for libffibox_global_user.so, which does not link this library: it resolves only
 * when this one was loaded with RTLD_GLOBAL first (LoadLibrary.global). */
int ffibox_global_answer(void) { return 42; }
