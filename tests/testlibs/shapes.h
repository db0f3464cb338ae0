/* Data shapes of libffibox_test.so: records, arrays and pointer graphs.
 *
 * Functions that integration tests call through ffibox to check that every C data shape
 * ctypes can express crosses the process boundary intact: structs and unions by value of
 * each x86-64 argument class, packed and bit-field records, arrays, arrays of strings,
 * linked client memory (pointer graphs), pointers into the worker, function pointers and
 * exported variables. Each function's comment says what a caller can check. For reference
 * and in-process use only; ffibox never includes it.
 */
#ifndef FFIBOX_TESTS_TESTLIBS_SHAPES_H_
#define FFIBOX_TESTS_TESTLIBS_SHAPES_H_

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Records by value, one per x86-64 classification --------------------------------- */

typedef struct {
  int a, b;
} IntPair; /* INTEGER class, one register */
typedef struct {
  char c;
  short s;
  int i;
} CharShortInt; /* INTEGER, padding after c */
typedef struct {
  float x, y;
} Float2; /* SSE, one register */
typedef struct {
  float x, y, z;
} Float3; /* SSE, two registers */
typedef struct {
  double x, y;
} Point; /* SSE, two registers */
typedef struct {
  double d;
  int i;
} DoubleInt; /* SSE + INTEGER */
typedef struct {
  long l;
  double d;
} LongAndDouble; /* INTEGER + SSE */
typedef struct {
  long a, b, c, d, e;
} Big5; /* MEMORY (40 bytes) */
typedef union {
  int i;
  float f;
} IntOrFloat;
typedef union {
  double d;
  long l;
} DoubleOrLong;

IntPair swap_pair(IntPair p);                   /* {p.b, p.a} */
int pair_sum(IntPair p);                        /* p.a + p.b */
CharShortInt csi_bump(CharShortInt v);          /* {c + 1, s + 2, i + 3} */
Float2 float2_scale(Float2 v, float k);         /* {x * k, y * k} */
Float3 float3_add(Float3 a, Float3 b);          /* component sum */
Point point_add(Point a, Point b);              /* component sum */
DoubleInt double_int_twice(DoubleInt v);        /* {2 d, 2 i} */
LongAndDouble long_double_mix(LongAndDouble v); /* {l * 2, d + 0.5} */
Big5 big5_make(long start);                     /* {start, start+1, ..., start+4} */
long big5_sum(Big5 v);                          /* a + b + c + d + e */
int iof_bits(IntOrFloat u);                     /* u.i */
IntOrFloat iof_from_float(float f);             /* {.f = f} */
long dol_bits(DoubleOrLong u);                  /* u.l */
DoubleOrLong dol_from_long(long l);             /* {.l = l} */

/* ---- Packing and bit fields ---------------------------------------------------------- */

#pragma pack(push, 1)
typedef struct {
  char c;
  int i;
  short s;
} Packed1; /* size 7 */
#pragma pack(pop)
#pragma pack(push, 2)
typedef struct {
  char c;
  int i;
  double d;
} Packed2; /* size 14, align 2 */
#pragma pack(pop)
#pragma pack(push, 4)
typedef struct {
  char c;
  double d;
  short s;
} Packed4; /* size 16, align 4 */
#pragma pack(pop)

typedef struct {
  unsigned a : 3;
  signed b : 5;
  unsigned c : 12;
  int d : 1;
  unsigned long e : 40; /* a second storage unit */
  signed char f : 4;
} Bits;

Packed1 packed1_bump(Packed1 p); /* {c + 1, i + 1, s + 1} */
long packed1_sum(Packed1 p);     /* c + i + s */
Packed2 packed2_bump(Packed2 p); /* {c + 1, i + 1, d + 1} */
double packed2_sum(Packed2 p);   /* c + i + d */
Packed4 packed4_bump(Packed4 p); /* {c + 1, d + 1, s + 1} */
double packed4_sum(Packed4 p);   /* c + d + s */
Bits bits_make(unsigned a, int b, unsigned c, int d, unsigned long e, int f);
long bits_sum(Bits v);    /* a + b + c + d + e + f (signed fields sign-extended) */
Bits bits_negate(Bits v); /* every signed field negated, unsigned fields + 1 */

/* ---- Arrays inside records, nesting -------------------------------------------------- */

typedef struct {
  char tag[3];
} Char3;
typedef struct {
  int v[4];
} Int4;
typedef struct {
  Point min, max;
} Rect;

Char3 char3_upper(Char3 t); /* toupper on each byte */
int int4_sum(Int4 v);       /* v[0] + ... + v[3] */
Int4 int4_reverse(Int4 v);  /* {v[3], v[2], v[1], v[0]} */
Rect rect_make(double x0, double y0, double x1, double y1);
double rect_area(Rect r);                                /* (max.x - min.x) * (max.y - min.y) */
void scale_rect(Rect* r, double k);                      /* inout: every coordinate * k */
double rect_width_of(const Rect* r);                     /* in: max.x - min.x */
void rect_bounds(const Point* points, int n, Rect* out); /* out: bounding box of n points */

/* ---- Arrays -------------------------------------------------------------------------- */

int sum_array(const int a[5]);                     /* a[0] + ... + a[4] */
int trace3(const int m[3][3]);                     /* m[0][0] + m[1][1] + m[2][2] */
double total_x(const Point* p, int n);             /* sum of p[i].x */
void fill_squares(int* out, int n);                /* out[i] = i * i */
int count_chars(const char** words, int n);        /* sum of strlen(words[i]) */
const char* join_words(const char** words, int n); /* "a+b+c" in a static buffer */

/* ---- Pointer graphs ------------------------------------------------------------------ */

typedef struct Node {
  int value;
  struct Node* next;
} Node;

typedef struct {
  const char* label;
  Point* first;
  Point* second;
} PointPair;

int sum_list(const Node* head);                       /* sum of values; 0 for NULL */
Node* make_list(int n);                               /* n nodes holding 0..n-1 (never freed) */
void out_list(int n, Node** out);                     /* *out = make_list(n) */
void reverse_list(Node** head);                       /* rewires next pointers; *head = old tail */
void pair_swap_and_shift(PointPair* pair, double dx); /* swaps first/second, first->x += dx */
double pair_distance2(const PointPair* pair);         /* squared distance first..second */
int pair_label_length(const PointPair* pair);         /* strlen(label) */
void get_name(const char** out);                      /* *out = a static string in the library */
void visit_node(Node* node, void (*visit)(Node*));    /* visit(node), once */
void get_cycle(Node** out);                           /* *out = a node whose next is itself */
void set_next(Node* node, Node* next);                /* node->next = next */
void store_node(Node** slot, Node* node);             /* *slot = node */
void bump_list(Node* head, int by);                   /* adds by to each value (at most 64) */
int next_value(Node node);                            /* node.next->value, -1 for NULL */
int split_first(char* text, char** rest);             /* cuts at the first space; *rest after it */

/* ---- Function pointers and variables ------------------------------------------------- */

typedef int (*binop)(int, int);
binop pick_op(int which); /* 0: a + b, 1: a - b, 2: a * b, else NULL */

extern Point ffibox_origin;        /* {1.5, -2.5} */
extern double ffibox_scale;        /* 2.25 */
extern int ffibox_primes[5];       /* {2, 3, 5, 7, 11} */
extern const char* ffibox_version; /* "ffibox-test 1.0" */
double origin_norm1(void);         /* |ffibox_origin.x| + |ffibox_origin.y| */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FFIBOX_TESTS_TESTLIBS_SHAPES_H_ */
