/* Native test library for ffibox. See ffibox_test.h for what each function does. */
#include "tests/testlibs/ffibox_test.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wctype.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- Scalars ------------------------------------------------------------------------ */

EXPORT bool is_even(int x) { return x % 2 == 0; }
EXPORT bool not_bool(bool b) { return !b; }
EXPORT char next_char(char c) { return (char)(c + 1); }
EXPORT signed char neg_schar(signed char x) { return (signed char)-x; }
EXPORT unsigned char add_uchar(unsigned char a, unsigned char b) { return (unsigned char)(a + b); }
EXPORT short add_short(short a, short b) { return (short)(a + b); }
EXPORT unsigned short add_ushort(unsigned short a, unsigned short b) {
  return (unsigned short)(a + b);
}
EXPORT int add_int(int a, int b) { return (int)((unsigned)a + (unsigned)b); }
EXPORT unsigned int add_uint(unsigned int a, unsigned int b) { return a + b; }
EXPORT long add_long(long a, long b) { return (long)((unsigned long)a + (unsigned long)b); }
EXPORT unsigned long add_ulong(unsigned long a, unsigned long b) { return a + b; }
EXPORT long long add_longlong(long long a, long long b) {
  return (long long)((unsigned long long)a + (unsigned long long)b);
}
EXPORT unsigned long long add_ulonglong(unsigned long long a, unsigned long long b) {
  return a + b;
}
EXPORT int8_t neg_int8(int8_t x) { return (int8_t)-x; }
EXPORT uint8_t add_uint8(uint8_t a, uint8_t b) { return (uint8_t)(a + b); }
EXPORT int16_t neg_int16(int16_t x) { return (int16_t)-x; }
EXPORT uint16_t add_uint16(uint16_t a, uint16_t b) { return (uint16_t)(a + b); }
EXPORT int32_t neg_int32(int32_t x) { return (int32_t)(0u - (uint32_t)x); }
EXPORT uint32_t add_uint32(uint32_t a, uint32_t b) { return a + b; }
EXPORT int64_t neg_int64(int64_t x) { return (int64_t)(0u - (uint64_t)x); }
EXPORT uint64_t add_uint64(uint64_t a, uint64_t b) { return a + b; }
EXPORT size_t twice_size(size_t n) { return 2 * n; }
EXPORT ssize_t neg_ssize(ssize_t n) { return (ssize_t)(0u - (size_t)n); }
EXPORT float mul_float(float a, float b) { return a * b; }
EXPORT double mul_double(double a, double b) { return a * b; }
EXPORT long double ld_half(long double x) { return x / 2; }
EXPORT wchar_t upper_wchar(wchar_t c) { return (wchar_t)towupper((wint_t)c); }
EXPORT void* ptr_offset(void* p, long offset) { return (char*)p + offset; }
EXPORT int sum_ints(int a, int b, int c, int d, int e, int f, int g, int h, int i, int j) {
  return a + b + c + d + e + f + g + h + i + j;
}
EXPORT double sum_mixed(int a, double b, long c, float d, unsigned char e) {
  return a + b + (double)c + d + e;
}
EXPORT int sum_variadic(int count, ...) {
  va_list args;
  va_start(args, count);
  int sum = 0;
  for (int i = 0; i < count; ++i) sum += va_arg(args, int);
  va_end(args);
  return sum;
}

/* ---- Strings ------------------------------------------------------------------------ */

EXPORT size_t str_len(const char* s) { return s == NULL ? 0 : strlen(s); }
EXPORT const char* greeting(void) { return "hello, ffibox"; }
EXPORT const char* text_of_length(int n) {
  static char text[1024];
  if (n < 0 || n >= (int)sizeof text) return NULL;
  memset(text, 'x', (size_t)n);
  text[n] = '\0';
  return text;
}
EXPORT char* str_dup_upper(const char* s) {
  if (s == NULL) return NULL;
  size_t n = strlen(s);
  char* copy = malloc(n + 1);
  if (copy == NULL) return NULL;
  for (size_t i = 0; i < n; ++i) copy[i] = (char)toupper((unsigned char)s[i]);
  copy[n] = '\0';
  return copy;
}
EXPORT size_t wide_label_len(const WideLabel* label) { return wcslen(label->text); }
EXPORT ZeroWidth zero_width_make(unsigned low, unsigned high) {
  ZeroWidth value = {0};
  value.low = low;
  value.high = high;
  return value;
}
EXPORT unsigned zero_width_high(ZeroWidth value) { return value.high; }

size_t wstr_len(const wchar_t* s) { return s == NULL ? 0 : wcslen(s); }
EXPORT const wchar_t* wgreeting(void) { return L"h\u00e9llo \u4e16\u754c"; }
EXPORT const char* null_string(void) { return NULL; }

/* ---- Buffers and pointer parameters --------------------------------------------------- */

EXPORT void fill_buffer(char* out, size_t n, char c) { memset(out, c, n); }
EXPORT size_t sum_bytes(const unsigned char* in, size_t n) {
  size_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += in[i];
  return sum;
}
EXPORT void reverse_in_place(char* buf, size_t n) {
  for (size_t i = 0; i < n / 2; ++i) {
    char t = buf[i];
    buf[i] = buf[n - 1 - i];
    buf[n - 1 - i] = t;
  }
}
EXPORT int divmod(int a, int b, int* quotient, int* remainder) {
  if (b == 0) return -1;
  *quotient = a / b;
  *remainder = a % b;
  return 0;
}
EXPORT void increment(int* p) { ++*p; }

/* ---- errno -------------------------------------------------------------------------- */

EXPORT int set_errno_to(int e) {
  errno = e;
  return -1;
}
EXPORT int get_errno_value(void) { return errno; }

/* ---- State -------------------------------------------------------------------------- */

EXPORT int ffibox_test_counter = 42;
static int calls_in_this_process = 0;
EXPORT int counter_next(void) { return ++calls_in_this_process; }
static int* registered_total;
EXPORT void register_total(int* total) { registered_total = total; }
EXPORT int add_to_total(int amount) { return *registered_total += amount; }
static char* registered_buffer;
static size_t registered_size;
EXPORT void register_buffer(char* buffer, size_t n) {
  registered_buffer = buffer;
  registered_size = n;
}
EXPORT void* registered_buffer_address(long offset) { return registered_buffer + offset; }
static struct ListNode list_head_node;
EXPORT struct ListNode* list_slots[4];
EXPORT struct ListNode* list_head(void) { return &list_head_node; }
EXPORT void out_list_head(struct ListNode** out) { *out = &list_head_node; }
static struct ListNode list_spare_node = {40, NULL, NULL, NULL, NULL};
EXPORT void out_list_spare(struct ListNode** out) { *out = &list_spare_node; }
EXPORT void set_list_slot(int i, struct ListNode* node) { list_slots[i & 3] = node; }
static int sum_nodes(const struct ListNode* node) {
  int sum = 0;
  for (; node != NULL; node = node->next) {
    sum += node->visit ? node->visit(node->value) : node->value;
    if (node->name != NULL) sum += (int)strlen(node->name);
    if (node->data != NULL) sum += *(const int*)node->data;
  }
  return sum;
}
EXPORT int list_sum(void) {
  int sum = sum_nodes(list_head_node.next);
  for (int i = 0; i < 4; ++i) sum += sum_nodes(list_slots[i]);
  if (list_head_node.name != NULL) sum += (int)strlen(list_head_node.name);
  if (list_head_node.data != NULL) sum += *(const int*)list_head_node.data;
  return sum;
}
EXPORT void heap_churn(void) {
  void* blocks[64];
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 64; ++i) {
      blocks[i] = malloc(8 + (size_t)(i % 32) * 8);
      if (blocks[i] != NULL) memset(blocks[i], 0xA5, 8 + (size_t)(i % 32) * 8);
    }
    for (int i = 0; i < 64; ++i) free(blocks[i]);
  }
}
EXPORT size_t fill_registered(int c) {
  memset(registered_buffer, c, registered_size);
  return registered_size;
}
EXPORT int fill_and_add(char* out, size_t n, int amount) {
  memset(out, 'x', n);
  return *registered_total += amount;
}

/* ---- Faults ------------------------------------------------------------------------- */

EXPORT int crash_null_deref(void) {
  volatile int* volatile target = NULL;
  *target = 1;
  return 0;
}

EXPORT int crash_abort(void) {
  abort();
  return 0;
}

EXPORT int crash_div_zero(int x) {
  volatile int divisor = 0;
  return x / divisor;
}

/* noinline + a live per-frame array used after the recursive call keeps this a real
 * recursion: no tail call, no loop. The recursion is unbounded on purpose. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winfinite-recursion"
__attribute__((noinline)) static int recurse(int depth) {
  volatile char frame[256];
  frame[depth & 255] = (char)depth;
  int below = recurse(depth + 1);
  return below + frame[(depth * 7) & 255];
}
#pragma GCC diagnostic pop

EXPORT int crash_stack_overflow(int depth) { return recurse(depth); }

EXPORT int crash_exit3(void) {
  exit(3);
  return 0;
}

EXPORT int hang_forever(void) {
  for (;;) {
    __asm__ volatile("" ::: "memory");
  }
  return 0;
}

static void* crash_after_delay(void* arg) {
  int delay_ms = (int)(intptr_t)arg;
  if (delay_ms > 0) usleep((useconds_t)delay_ms * 1000u);
  volatile int* volatile target = NULL;
  *target = 1;
  return NULL;
}

EXPORT int crash_later_thread(int delay_ms) {
  pthread_t thread;
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&thread, &attributes, crash_after_delay, (void*)(intptr_t)delay_ms);
  pthread_attr_destroy(&attributes);
  return rc == 0 ? 0 : -1;
}

EXPORT int sleep_ms(int ms) {
  if (ms > 0) usleep((useconds_t)ms * 1000u);
  return ms;
}

/* The environment, as a library configured by it sees it: at load (a constructor reads
 * FFIBOX_TEST_AT_LOAD) and later (any variable). NULL when unset. */
static const char* value_at_load;
__attribute__((constructor)) static void read_environment_at_load(void) {
  value_at_load = getenv("FFIBOX_TEST_AT_LOAD");
}
const char* env_at_load(void) { return value_at_load; }
const char* env_value(const char* name) { return getenv(name); }

/* Worker memory handed back through typed out-parameters (the caller must never
 * dereference a worker address itself). */
static int owned_numbers[4] = {7, 8, 9, 10};
static const char* owned_names[] = {"alpha", "beta", "gamma", NULL};

void out_malloced_string(char** out) { *out = strdup("made by the library"); }
void out_int_array(int** out) { *out = owned_numbers; }
int owned_number_at(int index) { return owned_numbers[index]; }
void set_owned_number(int index, int value) { owned_numbers[index] = value; }
void bump_owned_number(int index) {
  __atomic_fetch_add(&owned_numbers[index], 1, __ATOMIC_SEQ_CST);
}
static RotatingNode rotating_nodes[16];
static Rotating rotating = {&rotating_nodes[0], 0};
static long rotating_foreign;
static pthread_mutex_t rotating_mutex = PTHREAD_MUTEX_INITIALIZER;
void rotating_out(Rotating** out) {
  for (int i = 0; i < 16; ++i) rotating_nodes[i].id = i;
  *out = &rotating;
}
void rotate(void) {
  pthread_mutex_lock(&rotating_mutex);
  if (rotating.node != &rotating_nodes[rotating.turns % 16]) ++rotating_foreign;
  ++rotating.turns;
  rotating.node = &rotating_nodes[rotating.turns % 16];
  pthread_mutex_unlock(&rotating_mutex);
}
long rotating_foreign_writes(void) { return rotating_foreign; }
long rotating_node_id(void) { return rotating.node->id; }
static unsigned char counting_bytes[200000];
void out_counting_bytes(unsigned char** out, size_t* length) {
  for (size_t i = 0; i < sizeof counting_bytes; ++i) counting_bytes[i] = (unsigned char)(i * 7);
  *out = counting_bytes;
  *length = sizeof counting_bytes;
}
unsigned char counting_byte_at(size_t index) { return counting_bytes[index]; }
static char many_names_text[200][16];
static const char* many_names[201];
void out_many_names(const char*** out) {
  for (int i = 0; i < 200; ++i) {
    snprintf(many_names_text[i], sizeof many_names_text[i], "name%d", i);
    many_names[i] = i == 3 ? NULL : many_names_text[i];
  }
  many_names[200] = NULL;
  *out = many_names;
}
void fill_record(Record* record) {
  record->id = 42;
  record->name = strdup("record name");
  record->numbers = owned_numbers;
}
size_t total_length(const char* const* strings, int n) {
  size_t total = 0;
  for (int i = 0; i < n; ++i) total += strlen(strings[i]);
  return total;
}
void fill_names(const char** names, int n) {
  for (int i = 0; i < n && i < 3; ++i) names[i] = owned_names[i];
}
int each_row(int (*row)(void* context, int columns, char** values), void* context) {
  static char* values[] = {"first", "second", "third", NULL};
  return row(context, 3, values);
}

/* An opaque handle, as C APIs hand out objects. */
struct Handle {
  int value;
};
Handle* handle_new(int value) {
  Handle* handle = malloc(sizeof(Handle));
  handle->value = value;
  return handle;
}
void handle_out(int value, Handle** out) { *out = handle_new(value); }
int handle_get(const Handle* handle) { return handle->value; }
void handle_free(Handle* handle) { free(handle); }
long tagged_sum(Tagged tagged) {
  long sum = (long)strlen(tagged.name);
  for (size_t i = 0; i < sizeof(tagged.values) / sizeof(tagged.values[0]); ++i) {
    sum += tagged.values[i];
  }
  return sum;
}

long number_or_text_measure(NumberOrText value, int is_text) {
  return is_text ? (long)strlen(value.text) : value.number;
}

long variant_measure(Variant variant) {
  return number_or_text_measure(variant.as, variant.is_text);
}

Record make_record(void) {
  Record record = {7, "by value", owned_numbers};
  return record;
}

/* Wide strings holding units that are no Unicode characters: 0, "A", a lone surrogate,
 * "B"; 1, "A", U+110000 (past the last character), "B". */
static const wchar_t odd_wide_strings[2][4] = {{0x41, 0xD800, 0x42, 0}, {0x41, 0x110000, 0x42, 0}};

EXPORT const wchar_t* odd_wide(int which) { return odd_wide_strings[which != 0]; }

EXPORT int odd_wide_out(const wchar_t** out, int which) {
  *out = odd_wide(which);
  return 0;
}

/* An object the library makes and frees through a pointer to the caller's pointer, as
 * "destroy and NULL it" APIs do (dmtxEncodeDestroy(&encoder)). */
struct Box {
  int value;
};

EXPORT struct Box* box_new(int value) {
  struct Box* box = malloc(sizeof *box);
  if (box != NULL) box->value = value;
  return box;
}

/* Frees *box and sets it to NULL; returns the value it held, or -1 for NULL. */
EXPORT int box_destroy(struct Box** box) {
  if (box == NULL || *box == NULL) return -1;
  const int value = (*box)->value;
  free(*box);
  *box = NULL;
  return value;
}

/* Replaces *box with a new box holding `value` (the old one freed). */
EXPORT void box_renew(struct Box** box, int value) {
  free(*box);
  *box = box_new(value);
}

/* Asks `provide` for an array of doubles, as libspatialindex's stream loading asks its
 * callback (the callback stores a pointer to memory of its own into *out), then sums it;
 * -1 when it provides none. */
EXPORT double sum_provided(int (*provide)(double** out, int* count)) {
  double* values = NULL;
  int count = 0;
  if (provide(&values, &count) != 0 || values == NULL) return -1;
  double sum = 0;
  for (int i = 0; i < count; ++i) sum += values[i];
  return sum;
}

/* A face and its glyph slot, as FreeType hands them out: face_open fills the caller's pointer
 * once, and each face_load_glyph rewrites the slot the face points to (its metrics, and its
 * bitmap: a new buffer each time) behind pointers the caller has held since. */
struct GlyphSlot {
  int index;
  int width;
  unsigned char* bitmap; /* `width` bytes, each `index`; NULL for glyph 0 and before a load */
  long loads;
};
struct Face {
  const char* family;
  struct GlyphSlot* glyph;
  int glyphs_loaded;
};

EXPORT int face_open(const char* family, struct Face** out) {
  struct Face* face = calloc(1, sizeof *face);
  if (face == NULL) return -1;
  face->family = strdup(family);
  face->glyph = calloc(1, sizeof *face->glyph);
  *out = face;
  return 0;
}

/* Loads glyph `index` (0 to 255) into the face's slot; 0 on success. */
EXPORT int face_load_glyph(struct Face* face, int index) {
  if (index < 0 || index > 255) return -1;
  struct GlyphSlot* slot = face->glyph;
  free(slot->bitmap);
  slot->index = index;
  slot->width = index == 0 ? 0 : 2 * index;
  slot->bitmap = NULL;
  if (index != 0) {
    slot->bitmap = malloc((size_t)slot->width);
    memset(slot->bitmap, index, (size_t)slot->width);
  }
  ++slot->loads;
  ++face->glyphs_loaded;
  return 0;
}

EXPORT void face_close(struct Face* face) {
  free(face->glyph->bitmap);
  free(face->glyph);
  free((void*)face->family);
  free(face);
}

/* A packed record whose pointer straddles two 8-byte words (at offset 4), and two targets side
 * by side: packed_next switches the pointer between them, a change of its low half only. */
struct Straddled {
  long value;
};
struct __attribute__((packed)) PackedHolder {
  int tag;
  struct Straddled* inner;
  int pad;
};
static struct Straddled straddled[2] = {{111}, {222}};

EXPORT int packed_open(struct PackedHolder** out) {
  struct PackedHolder* holder = calloc(1, sizeof *holder);
  if (holder == NULL) return -1;
  holder->tag = 1;
  holder->inner = &straddled[0];
  *out = holder;
  return 0;
}

EXPORT int packed_next(struct PackedHolder* holder) {
  holder->inner = holder->inner == &straddled[0] ? &straddled[1] : &straddled[0];
  return ++holder->tag;
}

/* A consumer of rows, as libspatialindex's data stream is: `next` fills one row's
 * out-parameters, which lie side by side in this frame (a record here, so their order is
 * fixed: a count, an id, two pointers it stores, a length), until it returns nonzero. The sum
 * of each row's id and values, or -1000 - n when row n's pointers stayed NULL. */
typedef int (*row_source)(int64_t* id, double** lo, double** hi, uint32_t* count, size_t* length);
EXPORT double consume_rows(row_source next) {
  double total = 0;
  for (int n = 0;; ++n) {
    struct {
      uint32_t count;
      int64_t id;
      double* lo;
      double* hi;
      size_t length;
    } row = {0, -1, NULL, NULL, 0};
    if (next(&row.id, &row.lo, &row.hi, &row.count, &row.length) != 0) break;
    if (row.lo == NULL || row.hi == NULL) return -1000 - n;
    total += (double)row.id + (double)row.length;
    for (uint32_t i = 0; i < row.count; ++i) total += row.lo[i] + row.hi[i];
  }
  return total;
}

double sum_and_double_rows(double** rows, const size_t* lengths, size_t n) {
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < lengths[i]; ++j) {
      sum += rows[i][j];
      rows[i][j] *= 2;
    }
  }
  return sum;
}
