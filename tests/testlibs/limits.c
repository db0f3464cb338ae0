/* Functions that use resources on purpose, for the per-session limit tests
 * (tests/integration/limits_test.cc): memory past the session's address-space cap, CPU time
 * past its CPU cap. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
