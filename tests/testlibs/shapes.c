/* Data shapes of libffibox_test.so. See shapes.h for what each function does. */
#include "tests/testlibs/shapes.h"

#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- Records by value ---------------------------------------------------------------- */

EXPORT IntPair swap_pair(IntPair p) { return (IntPair){p.b, p.a}; }
EXPORT int pair_sum(IntPair p) { return p.a + p.b; }
EXPORT CharShortInt csi_bump(CharShortInt v) {
  return (CharShortInt){(char)(v.c + 1), (short)(v.s + 2), v.i + 3};
}
EXPORT Float2 float2_scale(Float2 v, float k) { return (Float2){v.x * k, v.y * k}; }
EXPORT Float3 float3_add(Float3 a, Float3 b) { return (Float3){a.x + b.x, a.y + b.y, a.z + b.z}; }
EXPORT Point point_add(Point a, Point b) { return (Point){a.x + b.x, a.y + b.y}; }
EXPORT DoubleInt double_int_twice(DoubleInt v) { return (DoubleInt){2 * v.d, 2 * v.i}; }
EXPORT LongAndDouble long_double_mix(LongAndDouble v) {
  return (LongAndDouble){v.l * 2, v.d + 0.5};
}
EXPORT Big5 big5_make(long start) {
  return (Big5){start, start + 1, start + 2, start + 3, start + 4};
}
EXPORT long big5_sum(Big5 v) { return v.a + v.b + v.c + v.d + v.e; }
EXPORT int iof_bits(IntOrFloat u) { return u.i; }
EXPORT IntOrFloat iof_from_float(float f) {
  IntOrFloat u;
  u.f = f;
  return u;
}
EXPORT long dol_bits(DoubleOrLong u) { return u.l; }
EXPORT DoubleOrLong dol_from_long(long l) {
  DoubleOrLong u;
  u.l = l;
  return u;
}

/* ---- Packing and bit fields ---------------------------------------------------------- */

EXPORT Packed1 packed1_bump(Packed1 p) {
  p.c++, p.i++, p.s++;
  return p;
}
EXPORT long packed1_sum(Packed1 p) { return (long)p.c + p.i + p.s; }
EXPORT Packed2 packed2_bump(Packed2 p) {
  p.c++, p.i++, p.d += 1;
  return p;
}
EXPORT double packed2_sum(Packed2 p) { return p.c + p.i + p.d; }
EXPORT Packed4 packed4_bump(Packed4 p) {
  p.c++, p.d += 1, p.s++;
  return p;
}
EXPORT double packed4_sum(Packed4 p) { return p.c + p.d + p.s; }
EXPORT Bits bits_make(unsigned a, int b, unsigned c, int d, unsigned long e, int f) {
  Bits v;
  memset(&v, 0, sizeof v);
  v.a = a, v.b = b, v.c = c, v.d = d, v.e = e, v.f = (signed char)f;
  return v;
}
EXPORT long bits_sum(Bits v) { return (long)v.a + v.b + (long)v.c + v.d + (long)v.e + v.f; }
EXPORT Bits bits_negate(Bits v) {
  v.a = v.a + 1, v.b = -v.b, v.c = v.c + 1, v.d = -v.d, v.e = v.e + 1, v.f = -v.f;
  return v;
}

/* ---- Arrays inside records, nesting -------------------------------------------------- */

EXPORT Char3 char3_upper(Char3 t) {
  for (int i = 0; i < 3; ++i) t.tag[i] = (char)toupper((unsigned char)t.tag[i]);
  return t;
}
EXPORT int int4_sum(Int4 v) { return v.v[0] + v.v[1] + v.v[2] + v.v[3]; }
EXPORT Int4 int4_reverse(Int4 v) { return (Int4){{v.v[3], v.v[2], v.v[1], v.v[0]}}; }
EXPORT Rect rect_make(double x0, double y0, double x1, double y1) {
  return (Rect){{x0, y0}, {x1, y1}};
}
EXPORT double rect_area(Rect r) { return (r.max.x - r.min.x) * (r.max.y - r.min.y); }
EXPORT void scale_rect(Rect* r, double k) {
  r->min.x *= k, r->min.y *= k, r->max.x *= k, r->max.y *= k;
}
EXPORT double rect_width_of(const Rect* r) { return r->max.x - r->min.x; }
EXPORT void rect_bounds(const Point* points, int n, Rect* out) {
  if (n <= 0) return;
  out->min = out->max = points[0];
  for (int i = 1; i < n; ++i) {
    if (points[i].x < out->min.x) out->min.x = points[i].x;
    if (points[i].y < out->min.y) out->min.y = points[i].y;
    if (points[i].x > out->max.x) out->max.x = points[i].x;
    if (points[i].y > out->max.y) out->max.y = points[i].y;
  }
}

// An array of records with padding (an int, then a double), each value scaled in place.
typedef struct {
  int tag;
  double value;
} TaggedValue;
EXPORT void scale_tagged(TaggedValue* items, int n, double k) {
  for (int i = 0; i < n; ++i) items[i].value *= k;
}

/* ---- Arrays -------------------------------------------------------------------------- */

EXPORT int sum_array(const int a[5]) { return a[0] + a[1] + a[2] + a[3] + a[4]; }
EXPORT int trace3(const int m[3][3]) { return m[0][0] + m[1][1] + m[2][2]; }
EXPORT double total_x(const Point* p, int n) {
  double total = 0;
  for (int i = 0; i < n; ++i) total += p[i].x;
  return total;
}
EXPORT void fill_squares(int* out, int n) {
  for (int i = 0; i < n; ++i) out[i] = i * i;
}
EXPORT int count_chars(const char** words, int n) {
  int total = 0;
  for (int i = 0; i < n; ++i) total += (int)strlen(words[i]);
  return total;
}
EXPORT const char* join_words(const char** words, int n) {
  static char joined[1024];
  size_t used = 0;
  joined[0] = '\0';
  for (int i = 0; i < n; ++i) {
    const size_t length = strlen(words[i]);
    if (used + length + 2 > sizeof joined) break;
    if (i > 0) joined[used++] = '+';
    memcpy(joined + used, words[i], length);
    used += length;
    joined[used] = '\0';
  }
  return joined;
}

/* ---- Pointer graphs ------------------------------------------------------------------ */

EXPORT int sum_list(const Node* head) {
  int sum = 0;
  for (; head != NULL; head = head->next) sum += head->value;
  return sum;
}
EXPORT void reverse_list(Node** head) {
  Node* previous = NULL;
  Node* node = *head;
  while (node != NULL) {
    Node* next = node->next;
    node->next = previous;
    previous = node;
    node = next;
  }
  *head = previous;
}
EXPORT void pair_swap_and_shift(PointPair* pair, double dx) {
  Point* first = pair->first;
  pair->first = pair->second;
  pair->second = first;
  pair->first->x += dx;
}
EXPORT double pair_distance2(const PointPair* pair) {
  const double dx = pair->second->x - pair->first->x;
  const double dy = pair->second->y - pair->first->y;
  return dx * dx + dy * dy;
}
EXPORT int pair_label_length(const PointPair* pair) { return (int)strlen(pair->label); }
EXPORT void get_name(const char** out) { *out = "ffibox shapes"; }
EXPORT void visit_node(Node* node, void (*visit)(Node*)) { visit(node); }
EXPORT void get_cycle(Node** out) {
  static Node loop = {17, &loop};
  *out = &loop;
}
// A list of `n` nodes holding 0..n-1, in one allocation the list's owner never frees.
EXPORT Node* make_list(int n) {
  if (n <= 0) return NULL;
  Node* nodes = calloc((size_t)n, sizeof(Node));
  if (nodes == NULL) return NULL;
  for (int i = 0; i < n; ++i) {
    nodes[i].value = i;
    nodes[i].next = i + 1 < n ? &nodes[i + 1] : NULL;
  }
  return nodes;
}
EXPORT void out_list(int n, Node** out) { *out = make_list(n); }
EXPORT void set_next(Node* node, Node* next) { node->next = next; }
EXPORT void store_node(Node** slot, Node* node) { *slot = node; }
EXPORT int next_value(Node node) { return node.next != NULL ? node.next->value : -1; }
EXPORT int next_next_value(Node node) {
  return node.next != NULL && node.next->next != NULL ? node.next->next->value : -1;
}
EXPORT void bump_list(Node* head, int by) {
  for (int i = 0; head != NULL && i < 64; ++i, head = head->next) head->value += by;
}
EXPORT int split_first(char* text, char** rest) {
  char* space = strchr(text, ' ');
  if (space == NULL) {
    *rest = NULL;
    return (int)strlen(text);
  }
  *space = '\0';
  *rest = space + 1;
  return (int)(space - text);
}

/* ---- Function pointers and variables ------------------------------------------------- */

static int op_add(int a, int b) { return a + b; }
static int op_sub(int a, int b) { return a - b; }
static int op_mul(int a, int b) { return a * b; }

EXPORT binop pick_op(int which) {
  switch (which) {
    case 0:
      return op_add;
    case 1:
      return op_sub;
    case 2:
      return op_mul;
    default:
      return NULL;
  }
}

EXPORT Point ffibox_origin = {1.5, -2.5};
EXPORT double ffibox_scale = 2.25;
EXPORT int ffibox_primes[5] = {2, 3, 5, 7, 11};
EXPORT const char* ffibox_version = "ffibox-test 1.0";
/* A function pointer variable (not in shapes.h: for in_dll of a prototype). */
EXPORT int (*ffibox_abs_handler)(int) = abs;
EXPORT double origin_norm1(void) {
  return (ffibox_origin.x < 0 ? -ffibox_origin.x : ffibox_origin.x) +
         (ffibox_origin.y < 0 ? -ffibox_origin.y : ffibox_origin.y);
}
