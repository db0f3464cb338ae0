// The preprocessor machinery behind FFIBOX_STRUCT, FFIBOX_UNION and FFIBOX_PACKED_STRUCT
// (records.h): FFIBOX_RECORD_ defines, next to a described record, the FfiboxRecordInfo and
// FfiboxVisitFields functions that argument-dependent lookup finds (type_traits.h, records.h).
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_RECORD_MACROS_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_RECORD_MACROS_H_

// Implementation detail: expands M(T, field) for each field name.
#define FFIBOX_PP_ARG_N_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, \
                         _17, _18, _19, _20, _21, _22, _23, _24, _25, _26, _27, _28, _29, _30,  \
                         _31, _32, N, ...)                                                      \
  N
#define FFIBOX_PP_NARG_(...)                                                                    \
  FFIBOX_PP_ARG_N_(__VA_ARGS__, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, \
                   16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
#define FFIBOX_PP_CAT_(a, b) FFIBOX_PP_CAT2_(a, b)
#define FFIBOX_PP_CAT2_(a, b) a##b
#define FFIBOX_FOR_EACH_(M, T, ...) \
  FFIBOX_PP_CAT_(FFIBOX_FE_, FFIBOX_PP_NARG_(__VA_ARGS__))(M, T, __VA_ARGS__)
#define FFIBOX_FE_1(M, T, x) M(T, x)
#define FFIBOX_FE_2(M, T, x, ...) M(T, x) FFIBOX_FE_1(M, T, __VA_ARGS__)
#define FFIBOX_FE_3(M, T, x, ...) M(T, x) FFIBOX_FE_2(M, T, __VA_ARGS__)
#define FFIBOX_FE_4(M, T, x, ...) M(T, x) FFIBOX_FE_3(M, T, __VA_ARGS__)
#define FFIBOX_FE_5(M, T, x, ...) M(T, x) FFIBOX_FE_4(M, T, __VA_ARGS__)
#define FFIBOX_FE_6(M, T, x, ...) M(T, x) FFIBOX_FE_5(M, T, __VA_ARGS__)
#define FFIBOX_FE_7(M, T, x, ...) M(T, x) FFIBOX_FE_6(M, T, __VA_ARGS__)
#define FFIBOX_FE_8(M, T, x, ...) M(T, x) FFIBOX_FE_7(M, T, __VA_ARGS__)
#define FFIBOX_FE_9(M, T, x, ...) M(T, x) FFIBOX_FE_8(M, T, __VA_ARGS__)
#define FFIBOX_FE_10(M, T, x, ...) M(T, x) FFIBOX_FE_9(M, T, __VA_ARGS__)
#define FFIBOX_FE_11(M, T, x, ...) M(T, x) FFIBOX_FE_10(M, T, __VA_ARGS__)
#define FFIBOX_FE_12(M, T, x, ...) M(T, x) FFIBOX_FE_11(M, T, __VA_ARGS__)
#define FFIBOX_FE_13(M, T, x, ...) M(T, x) FFIBOX_FE_12(M, T, __VA_ARGS__)
#define FFIBOX_FE_14(M, T, x, ...) M(T, x) FFIBOX_FE_13(M, T, __VA_ARGS__)
#define FFIBOX_FE_15(M, T, x, ...) M(T, x) FFIBOX_FE_14(M, T, __VA_ARGS__)
#define FFIBOX_FE_16(M, T, x, ...) M(T, x) FFIBOX_FE_15(M, T, __VA_ARGS__)
#define FFIBOX_FE_17(M, T, x, ...) M(T, x) FFIBOX_FE_16(M, T, __VA_ARGS__)
#define FFIBOX_FE_18(M, T, x, ...) M(T, x) FFIBOX_FE_17(M, T, __VA_ARGS__)
#define FFIBOX_FE_19(M, T, x, ...) M(T, x) FFIBOX_FE_18(M, T, __VA_ARGS__)
#define FFIBOX_FE_20(M, T, x, ...) M(T, x) FFIBOX_FE_19(M, T, __VA_ARGS__)
#define FFIBOX_FE_21(M, T, x, ...) M(T, x) FFIBOX_FE_20(M, T, __VA_ARGS__)
#define FFIBOX_FE_22(M, T, x, ...) M(T, x) FFIBOX_FE_21(M, T, __VA_ARGS__)
#define FFIBOX_FE_23(M, T, x, ...) M(T, x) FFIBOX_FE_22(M, T, __VA_ARGS__)
#define FFIBOX_FE_24(M, T, x, ...) M(T, x) FFIBOX_FE_23(M, T, __VA_ARGS__)
#define FFIBOX_FE_25(M, T, x, ...) M(T, x) FFIBOX_FE_24(M, T, __VA_ARGS__)
#define FFIBOX_FE_26(M, T, x, ...) M(T, x) FFIBOX_FE_25(M, T, __VA_ARGS__)
#define FFIBOX_FE_27(M, T, x, ...) M(T, x) FFIBOX_FE_26(M, T, __VA_ARGS__)
#define FFIBOX_FE_28(M, T, x, ...) M(T, x) FFIBOX_FE_27(M, T, __VA_ARGS__)
#define FFIBOX_FE_29(M, T, x, ...) M(T, x) FFIBOX_FE_28(M, T, __VA_ARGS__)
#define FFIBOX_FE_30(M, T, x, ...) M(T, x) FFIBOX_FE_29(M, T, __VA_ARGS__)
#define FFIBOX_FE_31(M, T, x, ...) M(T, x) FFIBOX_FE_30(M, T, __VA_ARGS__)
#define FFIBOX_FE_32(M, T, x, ...) M(T, x) FFIBOX_FE_31(M, T, __VA_ARGS__)

#define FFIBOX_VISIT_FIELD_(T, f) ffibox_visit_(#f, &T::f);
#define FFIBOX_RECORD_(T, kind, pack, ...)                                                  \
  [[maybe_unused]] inline ::ffibox::RecordInfo FfiboxRecordInfo(const T*) {                 \
    return ::ffibox::RecordInfo{kind, pack, #T};                                            \
  }                                                                                         \
  template <typename FfiboxVisitor>                                                         \
  [[maybe_unused]] inline void FfiboxVisitFields(const T*, FfiboxVisitor&& ffibox_visit_) { \
    FFIBOX_FOR_EACH_(FFIBOX_VISIT_FIELD_, T, __VA_ARGS__)                                   \
  }

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_RECORD_MACROS_H_
