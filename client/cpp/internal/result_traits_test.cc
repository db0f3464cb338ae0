#include "client/cpp/internal/result_traits.h"

#include <cmath>
#include <limits>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace client_internal {
namespace {

absl::StatusOr<v1::StringData> NoRemoteStrings(const v1::RemoteAddress&, bool) {
  return absl::InternalError("no remote reads expected");
}

TEST(ResultTraitsTest, ScalarsAreRangeChecked) {
  v1::Value value;
  value.set_int_value(300);
  EXPECT_FALSE(DecodeScalar<unsigned char>(value).ok());
  EXPECT_EQ(*DecodeScalar<int>(value), 300);
  value.set_int_value(-1);
  EXPECT_FALSE(DecodeScalar<unsigned>(value).ok());
  value.set_uint_value(~0ull);
  EXPECT_EQ(*DecodeScalar<unsigned long long>(value), ~0ull);
  EXPECT_FALSE(DecodeScalar<long>(value).ok());
  value.set_float_value(0.25);
  EXPECT_EQ(*DecodeScalar<float>(value), 0.25f);
  EXPECT_FALSE(DecodeScalar<int>(value).ok());
  // A float holds no other double: one out of its range (converting it would be undefined)
  // or between two floats is refused; infinities and NaN are floats.
  value.set_float_value(1e300);
  EXPECT_FALSE(DecodeScalar<float>(value).ok());
  EXPECT_EQ(*DecodeScalar<double>(value), 1e300);
  value.set_float_value(0.1);
  EXPECT_FALSE(DecodeScalar<float>(value).ok());
  value.set_float_value(-std::numeric_limits<double>::infinity());
  EXPECT_EQ(*DecodeScalar<float>(value), -std::numeric_limits<float>::infinity());
  value.set_float_value(std::numeric_limits<double>::quiet_NaN());
  EXPECT_TRUE(std::isnan(*DecodeScalar<float>(value)));
  value.set_bool_value(true);
  EXPECT_TRUE(*DecodeScalar<bool>(value));
}

TEST(ResultTraitsTest, StringsAndNull) {
  v1::Value value;
  value.set_bytes_value("hello");
  EXPECT_EQ(*ResultTraits<std::string>::Decode(value, NoRemoteStrings), "hello");
  value.mutable_pointer()->set_null(true);
  EXPECT_EQ(ErrorCodeOf(ResultTraits<std::string>::Decode(value, NoRemoteStrings).status()),
            v1::FAILED_PRECONDITION);
  EXPECT_EQ(*ResultTraits<std::optional<std::string>>::Decode(value, NoRemoteStrings),
            std::nullopt);
  value.set_text_value("h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c");
  EXPECT_EQ(*ResultTraits<std::wstring>::Decode(value, NoRemoteStrings),
            L"h\u00e9llo \u4e16\u754c");
}

TEST(ResultTraitsTest, StringReturnedAsPointerIsReadRemotely) {
  v1::Value value;
  value.mutable_pointer()->mutable_remote()->set_address(0x42);
  auto reader = [](const v1::RemoteAddress& address, bool wide) -> absl::StatusOr<v1::StringData> {
    v1::StringData data;
    data.set_data(wide ? "wide" : absl::StrCat("at ", address.address()));
    return data;
  };
  EXPECT_EQ(*ResultTraits<std::string>::Decode(value, reader), "at 66");
}

TEST(ResultTraitsTest, Pointers) {
  v1::Value value;
  value.mutable_pointer()->mutable_remote()->set_address(0x1234);
  value.mutable_pointer()->mutable_remote()->set_generation(3);
  EXPECT_EQ(*ResultTraits<void*>::Decode(value, NoRemoteStrings), RemotePtr(0x1234, 3));
  value.mutable_pointer()->set_null(true);
  EXPECT_TRUE(ResultTraits<void*>::Decode(value, NoRemoteStrings)->is_null());
  value.set_int_value(5);
  EXPECT_FALSE(ResultTraits<void*>::Decode(value, NoRemoteStrings).ok());
}

}  // namespace
}  // namespace client_internal
}  // namespace ffibox
