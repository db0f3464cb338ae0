/* Native test library for ffibox: libffibox_test.so.
 *
 * Functions that integration, fault and benchmark tests call through ffibox (C++ client,
 * Python ctypes drop-in, CLI). Each does something checkable for one C type or one kind of
 * argument passing; the crash_* and hang_* functions deliberately misbehave so tests can
 * verify that a worker's death is contained and reported. This header is for reference and
 * for tests that call the library in-process; ffibox itself never includes it.
 */
#ifndef FFIBOX_TESTS_TESTLIBS_FFIBOX_TEST_H_
#define FFIBOX_TESTS_TESTLIBS_FFIBOX_TEST_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <wchar.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Scalars: one function per C type ctypes knows. Integer arithmetic wraps. */
bool is_even(int x);                                           /* x % 2 == 0 */
bool not_bool(bool b);                                         /* !b */
char next_char(char c);                                        /* c + 1 */
signed char neg_schar(signed char x);                          /* -x */
unsigned char add_uchar(unsigned char a, unsigned char b);     /* a + b mod 256 */
short add_short(short a, short b);                             /* a + b */
unsigned short add_ushort(unsigned short a, unsigned short b); /* a + b mod 65536 */
int add_int(int a, int b);                                     /* a + b */
unsigned int add_uint(unsigned int a, unsigned int b);         /* a + b mod 2^32 */
long add_long(long a, long b);                                 /* a + b */
unsigned long add_ulong(unsigned long a, unsigned long b);     /* a + b mod 2^64 */
long long add_longlong(long long a, long long b);              /* a + b */
unsigned long long add_ulonglong(unsigned long long a, unsigned long long b);
int8_t neg_int8(int8_t x);               /* -x */
uint8_t add_uint8(uint8_t a, uint8_t b); /* a + b mod 2^8 */
int16_t neg_int16(int16_t x);            /* -x */
uint16_t add_uint16(uint16_t a, uint16_t b);
int32_t neg_int32(int32_t x);
uint32_t add_uint32(uint32_t a, uint32_t b);
int64_t neg_int64(int64_t x);
uint64_t add_uint64(uint64_t a, uint64_t b);
size_t twice_size(size_t n);            /* 2 * n */
ssize_t neg_ssize(ssize_t n);           /* -n */
float mul_float(float a, float b);      /* a * b */
double mul_double(double a, double b);  /* a * b */
long double ld_half(long double x);     /* x / 2 */
wchar_t upper_wchar(wchar_t c);         /* towupper(c) */
void* ptr_offset(void* p, long offset); /* (char*)p + offset */
int sum_ints(int a, int b, int c, int d, int e, int f, int g, int h, int i, int j);
double sum_mixed(int a, double b, long c, float d, unsigned char e); /* a + b + c + d + e */
int sum_variadic(int count, ...); /* sum of `count` int variadic arguments */

/* Strings. */
size_t str_len(const char* s);      /* strlen(s); 0 for NULL */
const char* greeting(void);         /* "hello, ffibox" (static) */
const char* text_of_length(int n);  /* n 'x' (a static buffer); NULL unless 0 <= n < 1024 */
char* str_dup_upper(const char* s); /* malloc'd upper-case copy; NULL for NULL */
/* Typed out-parameters that receive worker memory. */
typedef struct Record {
  int id;
  char* name;
  int* numbers;
} Record;
void out_malloced_string(char** out);        /* *out = strdup(...) */
void out_int_array(int** out);               /* *out = {7, 8, 9, 10} owned by the library */
int owned_number_at(int index);              /* that array's element, as the library sees it */
void set_owned_number(int index, int value); /* that array's element = value */
void bump_owned_number(int index);           /* that array's element + 1, atomically */
/* A record the library keeps and repoints on every rotate(), from any thread: whether anyone
 * but the library wrote into it shows in rotating_foreign_writes(). */
typedef struct RotatingNode {
  long id;
  long pad[3];
} RotatingNode;
typedef struct Rotating {
  RotatingNode* node; /* rotating_nodes[turns % 16] */
  long turns;
} Rotating;
void rotating_out(Rotating** out);
void rotate(void);
long rotating_foreign_writes(void);
long rotating_node_id(void);
void out_counting_bytes(unsigned char** out, size_t* length); /* 200000 bytes, i * 7 */
unsigned char counting_byte_at(size_t index);                 /* of that array, as it is now */
/* *out = 200 names "name0".."name199", NULL at index 3 and after the last; the library's. */
void out_many_names(const char*** out);
Record make_record(void);                   /* {7, "by value", the array above}, by value */
void fill_record(Record* record);           /* id 42, a malloc'd name, the array above */
void fill_names(const char** names, int n); /* "alpha", "beta", "gamma" */
/* The sum of rows[i][0..lengths[i]) over i < n, each element doubled in place after. */
double sum_and_double_rows(double** rows, const size_t* lengths, size_t n);
size_t total_length(const char* const* strings, int n); /* sum of their strlen */
/* A record holding a pointer beside an array of 64 KiB, passed by value. */
typedef struct Tagged {
  const char* name;
  int values[16384];
} Tagged;
long tagged_sum(Tagged tagged); /* strlen(name) plus the sum of the values */
/* A variant passed by value, its pointer in the union's second member. */
typedef union NumberOrText {
  long number;
  const char* text;
} NumberOrText;
typedef struct Variant {
  int is_text;
  NumberOrText as;
} Variant;
long variant_measure(Variant variant); /* strlen(text) for text, else the number */
long number_or_text_measure(NumberOrText value, int is_text); /* the same for the union */
/* Calls row(context, 3, {"first", "second", "third"}) like sqlite3_exec's callback. */
int each_row(int (*row)(void* context, int columns, char** values), void* context);
typedef struct Handle Handle; /* opaque */
Handle* handle_new(int value);
void handle_out(int value, Handle** out);
int handle_get(const Handle* handle);
void handle_free(Handle* handle);
const char* env_at_load(void);           /* FFIBOX_TEST_AT_LOAD when the library loaded */
const char* env_value(const char* name); /* getenv(name) */
size_t wstr_len(const wchar_t* s);       /* wcslen(s); 0 for NULL */
typedef struct WideLabel {
  int id;
  const wchar_t* text;
} WideLabel;
size_t wide_label_len(const WideLabel* label); /* wcslen(label->text) */
const wchar_t* wgreeting(void);                /* L"h\u00e9llo \u4e16\u754c" (static) */
const char* null_string(void);                 /* NULL */
/* A zero-width bit field: `high` starts at the next unsigned long, byte 8; 9 bytes. */
typedef struct ZeroWidth {
  unsigned char low : 3;
  unsigned long : 0;
  unsigned char high : 5;
} ZeroWidth;
ZeroWidth zero_width_make(unsigned low, unsigned high);
unsigned zero_width_high(ZeroWidth value); /* value.high, as the compiler reads it */

/* Buffers and pointer parameters. */
void fill_buffer(char* out, size_t n, char c);           /* out: n bytes of c */
size_t sum_bytes(const unsigned char* in, size_t n);     /* in: sum of n bytes */
void reverse_in_place(char* buf, size_t n);              /* inout: reverses n bytes */
int divmod(int a, int b, int* quotient, int* remainder); /* out: 0, or -1 if b == 0 */
void increment(int* p);                                  /* inout: ++*p */

/* errno. */
int set_errno_to(int e);   /* errno = e; returns -1 */
int get_errno_value(void); /* returns errno */

/* State: shows what persists within one worker and what a restart resets. */
extern int ffibox_test_counter; /* initially 42 */
int counter_next(void);         /* 1, 2, 3, ... per process */
/* Keeps the caller's int and adds to it in later calls that pass only numbers (as a library
 * updates statistics a caller registered). */
void register_total(int* total);
int add_to_total(int amount);                      /* *total += amount; the new total */
int fill_and_add(char* out, size_t n, int amount); /* n bytes of 'x', then add_to_total */
void register_buffer(char* buffer, size_t n);
size_t fill_registered(int c);                /* fills the registered buffer with c; its size */
void* registered_buffer_address(long offset); /* the registered buffer + offset */
/* A list whose head lives in the library: a caller links its own nodes after it, or points
 * list_slots at them, and the library walks them in later calls. */
struct ListNode {
  int value;
  struct ListNode* next;
  int (*visit)(int); /* when set, list_sum adds visit(value) instead of value */
  const char* name;  /* when set, list_sum adds its length too */
  void* data;        /* when set, list_sum adds the int there too */
};
extern struct ListNode* list_slots[4];
struct ListNode* list_head(void);                 /* the library's own head node */
void set_list_slot(int i, struct ListNode* node); /* list_slots[i] = node */
void out_list_head(struct ListNode** out);        /* *out = list_head() */
/* The nodes after the head, then those list_slots point to (and the nodes after them), and
 * the head's own name and data. */
int list_sum(void);
void heap_churn(void); /* mallocs, fills with 0xA5 and frees blocks of 8 to 256 bytes */

/* Faults: each kills the calling process in its own way. */
int crash_null_deref(void);           /* SIGSEGV: write through NULL */
int crash_abort(void);                /* SIGABRT */
int crash_div_zero(int x);            /* SIGFPE: x / 0 (integer) */
int crash_stack_overflow(int depth);  /* SIGSEGV: unbounded recursion */
int crash_exit3(void);                /* exit(3) */
int hang_forever(void);               /* never returns */
int crash_later_thread(int delay_ms); /* returns 0; a thread segfaults delay_ms later */
int sleep_ms(int ms);                 /* sleeps ms milliseconds; returns ms */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FFIBOX_TESTS_TESTLIBS_FFIBOX_TEST_H_ */
