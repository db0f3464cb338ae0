// Functions that call callbacks, for the callback tests: a fold over doubles, a stored
// handler fired later (also from a thread of the library's own after the call that started
// it returned), a callback from a thread the library creates, a struct mutated
// through a pointer, two invocations in one call, a callback that returns a string, a
// table of callbacks passed by pointer, callbacks of every scalar kind, and opaque user data
// handed to callbacks.
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct Point {
  int x;
  int y;
};

double fold(double (*f)(double, double), const double* xs, int n, double init) {
  double acc = init;
  for (int i = 0; i < n; ++i) acc = f(acc, xs[i]);
  return acc;
}

static int (*stored_handler)(int);

// Keeps `h` for fire_handler (an event-handler registration).
void register_handler(int (*h)(int)) { stored_handler = h; }

// Calls the registered handler with `x`; -1 when none is registered.
int fire_handler(int x) { return stored_handler != NULL ? stored_handler(x) : -1; }

// Calls the registered handler with `x`, `n` times in a row; the sum of its results, or -1
// when none is registered.
long fire_handler_n(int x, int n) {
  if (stored_handler == NULL) return -1;
  long sum = 0;
  for (int i = 0; i < n; ++i) sum += stored_handler(x);
  return sum;
}

static void* SpinAndFire(void* period) {
  const long period_ns = (long)(intptr_t)period * 1000000L;
  struct timespec last;
  clock_gettime(CLOCK_MONOTONIC, &last);
  for (;;) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((now.tv_sec - last.tv_sec) * 1000000000L + (now.tv_nsec - last.tv_nsec) >= period_ns) {
      stored_handler(0);
      last = now;
    }
  }
  return NULL;
}

// Starts a thread that keeps a CPU busy and calls the registered handler every `period_ms`
// milliseconds, for ever (a library's timer); 1 when it started, 0 without a handler.
int start_spinner_firing_handler(int period_ms) {
  if (stored_handler == NULL || period_ms <= 0) return 0;
  pthread_t thread;
  if (pthread_create(&thread, NULL, SpinAndFire, (void*)(intptr_t)period_ms) != 0) return 0;
  pthread_detach(thread);
  return 1;
}

static int (*stored_handler_with)(int, void*);
static void* stored_handler_data;

// Keeps `h` and the opaque `data` it is to be called with (a registration with user data).
void register_handler_with(int (*h)(int, void*), void* data) {
  stored_handler_with = h;
  stored_handler_data = data;
}

// Calls the handler register_handler_with kept with `x` and its data; -1 when none.
int fire_handler_with(int x) {
  return stored_handler_with != NULL ? stored_handler_with(x, stored_handler_data) : -1;
}

// What `f` makes of `x`, handed back untouched (opaque data through a callback both ways).
void* pass_through(void* (*f)(void*), void* x) { return f(x); }

// fire_handler_later's thread: what it calls the handler with, and what the handler answered
// (0 until it has).
static struct {
  int delay_ms;
  int x;
  int answer;
} fired_later;

static void* FireLater(void* arg) {
  (void)arg;
  struct timespec delay = {fired_later.delay_ms / 1000, (fired_later.delay_ms % 1000) * 1000000L};
  nanosleep(&delay, NULL);
  const int answer = stored_handler != NULL ? stored_handler(fired_later.x) : -1;
  __atomic_store_n(&fired_later.answer, answer, __ATOMIC_SEQ_CST);
  return NULL;
}

// Returns at once; `delay_ms` later a thread of its own calls the registered handler with
// `x` (a library's background thread reporting an event). 0 when the thread started.
int fire_handler_later(int delay_ms, int x) {
  fired_later.delay_ms = delay_ms;
  fired_later.x = x;
  __atomic_store_n(&fired_later.answer, 0, __ATOMIC_SEQ_CST);
  pthread_t thread;
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  const int rc = pthread_create(&thread, &attributes, FireLater, NULL);
  pthread_attr_destroy(&attributes);
  return rc == 0 ? 0 : -1;
}

// What the handler fire_handler_later called answered, waiting up to `timeout_ms` for it;
// 0 if it has not answered by then.
int fired_later_answer(int timeout_ms) {
  for (int waited = 0;; ++waited) {
    const int answer = __atomic_load_n(&fired_later.answer, __ATOMIC_SEQ_CST);
    if (answer != 0 || waited >= timeout_ms) return answer;
    struct timespec millisecond = {0, 1000000L};
    nanosleep(&millisecond, NULL);
  }
}

struct ThreadCall {
  int (*h)(int);
  int x;
  int result;
};

static void* RunThreadCall(void* arg) {
  struct ThreadCall* call = (struct ThreadCall*)arg;
  call->result = call->h(call->x);
  return NULL;
}

// Calls h(x) on a new thread and returns its result; -1 if the thread cannot start.
int call_from_thread(int (*h)(int), int x) {
  struct ThreadCall call = {h, x, -1};
  pthread_t thread;
  if (pthread_create(&thread, NULL, RunThreadCall, &call) != 0) return -1;
  pthread_join(thread, NULL);
  return call.result;
}

struct ThreadCalls {
  int (*h)(int);
  int n;
  long sum;
};

static void* RunThreadCalls(void* arg) {
  struct ThreadCalls* calls = (struct ThreadCalls*)arg;
  for (int i = 1; i <= calls->n; ++i) calls->sum += calls->h(i);
  return NULL;
}

// Calls h(1), ..., h(n) in a row on a new thread (as a library's worker thread reports
// progress) and returns the sum of the results; -1 if the thread cannot start.
long call_from_thread_n(int (*h)(int), int n) {
  struct ThreadCalls calls = {h, n, 0};
  pthread_t thread;
  if (pthread_create(&thread, NULL, RunThreadCalls, &calls) != 0) return -1;
  pthread_join(thread, NULL);
  return calls.sum;
}

// Lets f change *p, then returns (the caller checks *p).
void mutate_point(void (*f)(struct Point*), struct Point* p) { f(p); }

// Returns h(h(x)): two invocations of one callback within one call.
int call_twice_nested(int (*h)(int), int x) { return h(h(x)); }

// Calls f(a, b) once and returns *a: a callback handed two pointers that may be one, or
// point into one array (an in-place `f(dst, src)`).
int call_with_pair(void (*f)(int*, int*), int* a, int* b) {
  f(a, b);
  return *a;
}

// The index of the element f picks, folding arr from its first: best = f(best, &arr[i]), as
// a "pick the larger" callback returning one of its arguments.
int pick_index(int* (*f)(int*, int*), int* arr, int n) {
  int* best = arr;
  for (int i = 1; i < n; ++i) best = f(best, arr + i);
  return (int)(best - arr);
}

// Lays out n strings "name-<i>" as a library might hand them to a callback: `spacing` bytes
// apart (at least 12) from `offset` bytes into fresh pages, so that one may run past its
// page, with the NULL-terminated array of them at the start of a page of its own (n < 500).
// Calls visit(names, n) and returns what it returned times 256 plus the first byte of the
// first string after it (a callback may write through the strings); -1 if out of memory.
int visit_names(int (*visit)(char** names, int n), int n, int spacing, int offset) {
  const size_t bytes = ((size_t)offset + (size_t)n * (size_t)spacing + 4096) / 4096 * 4096;
  char* area = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char** names = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED || names == MAP_FAILED || spacing < 12 || n < 1 || n >= 500) return -1;
  for (int i = 0; i < n; ++i) {
    names[i] = area + offset + (size_t)i * (size_t)spacing;
    snprintf(names[i], 12, "name-%d", i);
  }
  const int visited = visit(names, n);
  const int first = (unsigned char)names[0][0];
  munmap(names, 4096);
  munmap(area, bytes);
  return visited * 256 + first;
}

// Writes `value` `offset` bytes into the first of `names`, as a library writes into memory
// it handed a callback, while the callback runs.
void poke_first_name(char** names, int offset, char value) { names[0][offset] = value; }
// The byte `offset` bytes into the `index`th of `names`, as the library sees it.
int name_byte(char** names, int index, int offset) { return names[index][offset]; }

// A record whose first members are those of a smaller one (C's "base struct first"): a
// callback is handed a Full as a Head, and finds the Full through `full`.
struct Full;
struct Head {
  const char* tag;
  struct Full* full;
};
struct Full {
  const char* tag;
  struct Full* full;
  const char* extra;
  long x;
};
long call_head(long (*cb)(struct Head*)) {
  static struct Full full = {"tag", &full, "extra", 42};
  return cb((struct Head*)&full);
}
// call_head after `delay_ms`: another thread's request meanwhile waits behind this call.
long call_head_later(long (*cb)(struct Head*), int delay_ms) {
  usleep((useconds_t)delay_ms * 1000);
  return call_head(cb);
}

// Calls fill(buffer, n) once: a callback handed a buffer of n bytes, as audio and I/O
// libraries hand their callbacks.
void call_fill(void (*fill)(unsigned char*, int), unsigned char* buffer, int n) { fill(buffer, n); }

// Calls f(s) once: a callback handed a string, as a logging hook is.
int call_with_string(int (*f)(const char*), const char* s) { return f(s); }

// The length of the string make() returns (0 for NULL, which a failed callback gives).
size_t length_of_made(const char* (*make)(void)) {
  const char* made = make();
  return made != NULL ? strlen(made) : 0;
}

// The video-output pattern (libvlc's lock callback): `lock` stores where the frame goes in
// the library's plane pointers, then the library writes the frame there. Returns the bytes
// written (0 when the callback stored no plane).
size_t fill_locked_plane(void* (*lock)(void** planes), int value, size_t size) {
  void* planes[3] = {NULL, NULL, NULL};
  lock(planes);
  if (planes[0] == NULL) return 0;
  memset(planes[0], value, size);
  return size;
}

// A table of callbacks passed by pointer, as parsers (yajl's callbacks), glob's
// GLOB_ALTDIRFUNC and plugin interfaces take them: apply_ops calls them during the call,
// keep_ops keeps the table for run_kept_ops to call in later calls (the library holds the
// caller's structure), and ops_start_is reports whether a field holds a given function.
struct Ops {
  int (*start)(int);
  int (*combine)(int, int);
  int tag;
};
static const struct Ops* kept_ops;

// ops->combine(ops->start(x), ops->tag); -1 when a field is NULL.
int apply_ops(const struct Ops* ops, int x) {
  if (ops->start == NULL || ops->combine == NULL) return -1;
  return ops->combine(ops->start(x), ops->tag);
}

void keep_ops(const struct Ops* ops) { kept_ops = ops; }

// apply_ops on the kept table; -2 when none is kept.
int run_kept_ops(int x) { return kept_ops != NULL ? apply_ops(kept_ops, x) : -2; }

static int negate(int x) { return -x; }

// Replaces the table's start with a function of the library's own (the caller's structure
// then holds it).
void set_start_to_negate(struct Ops* ops) { ops->start = negate; }

// Calls `f` once with one argument of each scalar kind, as given, and returns what it
// returns.
double pass_scalars(double (*f)(_Bool, signed char, unsigned short, int, unsigned int, long long,
                                unsigned long long, float, double),
                    _Bool b, signed char c, unsigned short s, int i, unsigned int u, long long ll,
                    unsigned long long ull, float fl, double d) {
  return f(b, c, s, i, u, ll, ull, fl, d);
}

// Calls `f` with x, x + 1, ..., x + n - 1 and returns the sum of what it returned (each an
// unsigned char: the result as native code sees it, truncated as C truncates).
int sum_uchar_results(unsigned char (*f)(int), int x, int n) {
  int sum = 0;
  for (int i = 0; i < n; ++i) sum += f(x + i);
  return sum;
}

// Calls the void callback `f` with x, x + 1, ..., x + n - 1.
void call_void_n(void (*f)(int), int x, int n) {
  for (int i = 0; i < n; ++i) f(x + i);
}
