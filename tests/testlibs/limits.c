/* Functions that use resources on purpose, for the per-session limit tests
 * (tests/integration/limits_test.cc): memory past the session's address-space cap, CPU time
 * past its CPU cap, threads past the cap on threads and processes, and a background thread
 * that keeps spinning while the session is idle. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Allocates `mib` MiB, touches every byte and frees it. Returns 1 when malloc gave the
 * memory, 0 when it returned NULL (as it does past RLIMIT_AS). */
int allocate_mib(int mib) {
  if (mib <= 0) return 1;
  size_t bytes = (size_t)mib << 20;
  char* memory = malloc(bytes);
  if (memory == NULL) return 0;
  memset(memory, 0x5a, bytes);
  int sum = memory[bytes - 1];
  free(memory);
  return sum == 0x5a;
}

/* Spins until this process has used `seconds` seconds of CPU time; returns `seconds`. */
int spin_cpu_seconds(int seconds) {
  struct timespec now;
  volatile unsigned long counter = 0;
  for (;;) {
    for (int i = 0; i < 1000000; ++i) counter += (unsigned long)i;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    if (now.tv_sec >= seconds) return seconds;
  }
}

static void* sleep_forever(void* unused) {
  (void)unused;
  for (;;) pause();
  return NULL;
}

/* Starts up to `count` threads that outlive the call (they sleep forever); returns how many
 * the system let it start (a cap on threads and processes refuses the rest). */
int start_sleeping_threads(int count) {
  int started = 0;
  for (int i = 0; i < count; ++i) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 << 10);
    pthread_t thread;
    int failed = pthread_create(&thread, &attr, sleep_forever, NULL);
    pthread_attr_destroy(&attr);
    if (failed) break;
    pthread_detach(thread);
    ++started;
  }
  return started;
}

static void* spin_forever(void* unused) {
  (void)unused;
  volatile unsigned long counter = 0;
  for (;;) ++counter;
  return NULL;
}

/* Starts a thread that keeps a CPU busy after the call returns; returns 1 when it started. */
int start_background_spinner(void) {
  pthread_t thread;
  if (pthread_create(&thread, NULL, spin_forever, NULL) != 0) return 0;
  pthread_detach(thread);
  return 1;
}

/* This process's CPU time so far, in milliseconds. */
long process_cpu_ms(void) {
  struct timespec now;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return now.tv_sec * 1000L + now.tv_nsec / 1000000L;
}
