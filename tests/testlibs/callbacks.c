// Functions that call callbacks, for the callback tests: a fold over doubles, a stored
// handler fired later, a callback from a thread the library creates, a struct mutated
// through a pointer, two invocations in one call, and a callback that returns a string.
#include <pthread.h>
#include <stddef.h>
#include <string.h>

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

// Lets f change *p, then returns (the caller checks *p).
void mutate_point(void (*f)(struct Point*), struct Point* p) { f(p); }

// Returns h(h(x)): two invocations of one callback within one call.
int call_twice_nested(int (*h)(int), int x) { return h(h(x)); }

// Calls fill(buffer, n) once: a callback handed a buffer of n bytes, as audio and I/O
// libraries hand their callbacks.
void call_fill(void (*fill)(unsigned char*, int), unsigned char* buffer, int n) { fill(buffer, n); }

// The length of the string make() returns (0 for NULL, which a failed callback gives).
size_t length_of_made(const char* (*make)(void)) {
  const char* made = make();
  return made != NULL ? strlen(made) : 0;
}
