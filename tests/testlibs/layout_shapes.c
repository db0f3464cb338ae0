/* Layout reference table of libffibox_test.so: what gcc computes for 40 record and array
 * shapes.
 *
 * Each shape below is a C type; the table records its sizeof, _Alignof and, per named field,
 * offsetof, or for a bit field its first bit counted from the start of the record (found at
 * run time: the field is set to all ones in a zeroed object and the lowest set bit is
 * searched) and its width. tests/integration/layout_test.cc builds the same shapes as
 * ffibox.v1.Type messages and checks that the worker's GetLayout agrees with gcc exactly.
 * The table is reached through the scalar accessors at the end (layout_shape_count, ...).
 */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <wchar.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- Plain records and padding ------------------------------------------------------- */
typedef struct {
  char c;
  int i;
} S_char_int;
typedef struct {
  int i;
  char c;
} S_int_char;
typedef struct {
  char c;
  double d;
} S_char_double;
typedef struct {
  short a, b, c;
} S_short3;
typedef struct {
  char a;
  long b;
  char c;
  float d;
  short e;
} S_mixed;
typedef struct {
  long long a;
  char b;
} S_ll_char;
typedef struct {
  bool a;
  int b;
  bool c;
} S_bool_int;
typedef struct {
  char c;
  void* p;
  char* s;
} S_ptrs;
typedef struct {
  char c;
  long double ld;
} S_long_double;
typedef struct {
  char c;
  wchar_t w;
  short s;
} S_wchar;
typedef struct {
  char c;
  int (*fn)(int);
} S_func_ptr;
typedef struct {
  double d;
  char c[3];
} S_empty_tail;

/* ---- Nesting and arrays inside records ----------------------------------------------- */
typedef struct {
  char c;
  S_char_double inner;
  short s;
} S_nested;
typedef struct {
  S_int_char a;
  S_int_char b;
  char c;
} S_nested2;
typedef struct {
  char tag[5];
  int i;
} S_char_array;
typedef struct {
  short s;
  int v[3];
  char c;
} S_int_array;
typedef struct {
  char c;
  short m[2][3];
  double d;
} S_2d;
typedef struct {
  char c;
  S_char_int items[3];
} S_struct_array;

/* ---- Unions -------------------------------------------------------------------------- */
typedef union {
  int i;
  float f;
} U_int_float;
typedef union {
  char c[9];
  double d;
  short s;
} U_mixed;
typedef union {
  S_char_double s;
  long l;
} U_struct;
typedef struct {
  char c;
  U_mixed u;
  int i;
} S_with_union;

/* ---- Packing ------------------------------------------------------------------------- */
#pragma pack(push, 1)
typedef struct {
  char c;
  int i;
  double d;
  short s;
} P1_mixed;
typedef struct {
  char c;
  S_char_int inner;
} P1_nested;
typedef struct {
  char c;
  unsigned a : 12;
  unsigned b : 7;
} P1_bits;
#pragma pack(pop)
#pragma pack(push, 2)
typedef struct {
  char c;
  int i;
  double d;
  char e;
} P2_mixed;
typedef struct {
  char c;
  long v[2];
} P2_array;
#pragma pack(pop)
#pragma pack(push, 4)
typedef struct {
  char c;
  double d;
  short s;
  long l;
} P4_mixed;
typedef struct {
  char c;
  long double ld;
} P4_long_double;
#pragma pack(pop)

/* ---- Bit fields ---------------------------------------------------------------------- */
typedef struct {
  unsigned a : 3;
  unsigned b : 5;
  unsigned c : 24;
} B_unsigned;
typedef struct {
  signed a : 4;
  signed b : 12;
  int c : 16;
} B_signed;
typedef struct {
  unsigned a : 3;
  signed b : 5;
  unsigned c : 12;
  int d : 1;
} B_mixed_widths;
typedef struct {
  unsigned a : 3;
  unsigned : 0;
  unsigned b : 5;
} B_zero_width;
typedef struct {
  unsigned a : 3;
  unsigned : 5;
  unsigned b : 7;
} B_unnamed;
typedef struct {
  unsigned a : 30;
  unsigned b : 4;
} B_straddle;
typedef struct {
  char a;
  unsigned char b : 3;
  short c : 9;
  unsigned char d : 7;
} B_char_short;
typedef struct {
  unsigned long a : 40;
  unsigned long b : 30;
  int c : 5;
} B_long;
typedef struct {
  int x;
  unsigned a : 4;
  char y;
  unsigned b : 6;
} B_with_plain;
typedef struct {
  bool a : 1;
  bool b : 1;
  int c : 3;
} B_bool;
typedef union {
  unsigned a : 5;
  int b : 9;
  char c;
} U_bits;

/* ---- Arrays -------------------------------------------------------------------------- */
typedef int A_int10[10];
typedef S_char_double A_struct3[3];
typedef double A_2d[3][4];

/* ---- The table ----------------------------------------------------------------------- */

enum { kMaxShapes = 64, kMaxFields = 8 };

typedef struct {
  const char* name;
  long offset;       /* offsetof; -1 for bit fields */
  long bit_position; /* first bit from the start of the record */
  int bit_width;     /* 0 for ordinary fields */
} ShapeField;

typedef struct {
  const char* name;
  long size;
  long alignment;
  int field_count;
  ShapeField fields[kMaxFields];
} Shape;

static Shape shapes[kMaxShapes];
static int shape_count = -1;

static long LowestSetBit(const void* object, size_t size) {
  const unsigned char* bytes = (const unsigned char*)object;
  for (size_t i = 0; i < size; ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      if (bytes[i] & (1u << bit)) return (long)(i * 8 + bit);
    }
  }
  return -1;
}

static void AddField(Shape* shape, const char* name, long offset, long bit_position, int width) {
  if (shape->field_count >= kMaxFields) return;
  ShapeField* field = &shape->fields[shape->field_count++];
  field->name = name;
  field->offset = offset;
  field->bit_position = bit_position;
  field->bit_width = width;
}

#define BEGIN(S)                            \
  do {                                      \
    Shape* shape_ = &shapes[shape_count++]; \
    typedef S T_;                           \
    shape_->name = #S;                      \
    shape_->size = (long)sizeof(T_);        \
    shape_->alignment = (long)_Alignof(T_);
#define FIELD(f) AddField(shape_, #f, (long)offsetof(T_, f), (long)offsetof(T_, f) * 8, 0);
#define BITS(f, width)                               \
  AddField(shape_, #f, -1, ({                        \
             T_ object_;                             \
             memset(&object_, 0, sizeof object_);    \
             object_.f = -1;                         \
             LowestSetBit(&object_, sizeof object_); \
           }),                                       \
           width);
#define END \
  }         \
  while (0)

static void BuildTable(void) {
  if (shape_count >= 0) return;
  shape_count = 0;
  BEGIN(S_char_int) FIELD(c) FIELD(i) END;
  BEGIN(S_int_char) FIELD(i) FIELD(c) END;
  BEGIN(S_char_double) FIELD(c) FIELD(d) END;
  BEGIN(S_short3) FIELD(a) FIELD(b) FIELD(c) END;
  BEGIN(S_mixed) FIELD(a) FIELD(b) FIELD(c) FIELD(d) FIELD(e) END;
  BEGIN(S_ll_char) FIELD(a) FIELD(b) END;
  BEGIN(S_bool_int) FIELD(a) FIELD(b) FIELD(c) END;
  BEGIN(S_ptrs) FIELD(c) FIELD(p) FIELD(s) END;
  BEGIN(S_long_double) FIELD(c) FIELD(ld) END;
  BEGIN(S_wchar) FIELD(c) FIELD(w) FIELD(s) END;
  BEGIN(S_func_ptr) FIELD(c) FIELD(fn) END;
  BEGIN(S_empty_tail) FIELD(d) FIELD(c) END;
  BEGIN(S_nested) FIELD(c) FIELD(inner) FIELD(s) END;
  BEGIN(S_nested2) FIELD(a) FIELD(b) FIELD(c) END;
  BEGIN(S_char_array) FIELD(tag) FIELD(i) END;
  BEGIN(S_int_array) FIELD(s) FIELD(v) FIELD(c) END;
  BEGIN(S_2d) FIELD(c) FIELD(m) FIELD(d) END;
  BEGIN(S_struct_array) FIELD(c) FIELD(items) END;
  BEGIN(U_int_float) FIELD(i) FIELD(f) END;
  BEGIN(U_mixed) FIELD(c) FIELD(d) FIELD(s) END;
  BEGIN(U_struct) FIELD(s) FIELD(l) END;
  BEGIN(S_with_union) FIELD(c) FIELD(u) FIELD(i) END;
  BEGIN(P1_mixed) FIELD(c) FIELD(i) FIELD(d) FIELD(s) END;
  BEGIN(P1_nested) FIELD(c) FIELD(inner) END;
  BEGIN(P1_bits) FIELD(c) BITS(a, 12) BITS(b, 7) END;
  BEGIN(P2_mixed) FIELD(c) FIELD(i) FIELD(d) FIELD(e) END;
  BEGIN(P2_array) FIELD(c) FIELD(v) END;
  BEGIN(P4_mixed) FIELD(c) FIELD(d) FIELD(s) FIELD(l) END;
  BEGIN(P4_long_double) FIELD(c) FIELD(ld) END;
  BEGIN(B_unsigned) BITS(a, 3) BITS(b, 5) BITS(c, 24) END;
  BEGIN(B_signed) BITS(a, 4) BITS(b, 12) BITS(c, 16) END;
  BEGIN(B_mixed_widths) BITS(a, 3) BITS(b, 5) BITS(c, 12) BITS(d, 1) END;
  BEGIN(B_zero_width) BITS(a, 3) BITS(b, 5) END;
  BEGIN(B_unnamed) BITS(a, 3) BITS(b, 7) END;
  BEGIN(B_straddle) BITS(a, 30) BITS(b, 4) END;
  BEGIN(B_char_short) FIELD(a) BITS(b, 3) BITS(c, 9) BITS(d, 7) END;
  BEGIN(B_long) BITS(a, 40) BITS(b, 30) BITS(c, 5) END;
  BEGIN(B_with_plain) FIELD(x) BITS(a, 4) FIELD(y) BITS(b, 6) END;
  BEGIN(B_bool) BITS(a, 1) BITS(b, 1) BITS(c, 3) END;
  BEGIN(U_bits) BITS(a, 5) BITS(b, 9) FIELD(c) END;
  BEGIN(A_int10) END;
  BEGIN(A_struct3) END;
  BEGIN(A_2d) END;
}

static const Shape* ShapeAt(int shape) {
  BuildTable();
  return shape >= 0 && shape < shape_count ? &shapes[shape] : NULL;
}

static const ShapeField* FieldAt(int shape, int field) {
  const Shape* s = ShapeAt(shape);
  return s != NULL && field >= 0 && field < s->field_count ? &s->fields[field] : NULL;
}

/* Number of shapes in the table. */
EXPORT int layout_shape_count(void) {
  BuildTable();
  return shape_count;
}
/* The C type name of shape `shape` (0-based), or NULL. */
EXPORT const char* layout_shape_name(int shape) {
  const Shape* s = ShapeAt(shape);
  return s ? s->name : NULL;
}
/* sizeof, or -1 for an unknown shape. */
EXPORT long layout_shape_size(int shape) {
  const Shape* s = ShapeAt(shape);
  return s ? s->size : -1;
}
/* _Alignof, or -1. */
EXPORT long layout_shape_alignment(int shape) {
  const Shape* s = ShapeAt(shape);
  return s ? s->alignment : -1;
}
/* Number of named fields recorded for the shape (0 for arrays), or -1. */
EXPORT int layout_shape_field_count(int shape) {
  const Shape* s = ShapeAt(shape);
  return s ? s->field_count : -1;
}
/* The field's name, or NULL. */
EXPORT const char* layout_field_name(int shape, int field) {
  const ShapeField* f = FieldAt(shape, field);
  return f ? f->name : NULL;
}
/* offsetof for an ordinary field; -1 for a bit field or an unknown field. */
EXPORT long layout_field_offset(int shape, int field) {
  const ShapeField* f = FieldAt(shape, field);
  return f ? f->offset : -1;
}
/* The field's first bit counted from the start of the record, or -1. */
EXPORT long layout_field_bit_position(int shape, int field) {
  const ShapeField* f = FieldAt(shape, field);
  return f ? f->bit_position : -1;
}
/* The bit width of a bit field; 0 for an ordinary field, -1 for an unknown one. */
EXPORT int layout_field_bit_width(int shape, int field) {
  const ShapeField* f = FieldAt(shape, field);
  return f ? f->bit_width : -1;
}
