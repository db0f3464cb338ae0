// Headers printed by `ffibox bindgen --lang=cpp` (genrules in BUILD) for zlib.h, sqlite3.h
// and the test library's headers: they compile (their static_asserts hold clang's layouts
// against this compiler's) and their typed accessors call the real libraries through a real
// ffiboxd.
#include <limits.h>
#include <stdlib.h>

#include <string>
#include <vector>

#include "client/cpp/ffibox_client.h"
#include "gtest/gtest.h"
#include "tests/integration/sqlite3_bindings.h"
#include "tests/integration/testlib_bindings.h"
#include "tests/integration/zlib_bindings.h"
#include "tests/support/session_fixture.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

class BindgenTest : public test_support::SessionFixture {
 protected:
  // The system's libraries beside the test library's directory.
  std::vector<std::string> ServerFlags() const override {
    char library[PATH_MAX];
    std::string roots = "/usr/lib,/lib";
    if (realpath(test_support::TestLibPath().c_str(), library) != nullptr) {
      const std::string real(library);
      roots += "," + real.substr(0, real.rfind('/'));
    }
    return {"--allow_root=" + roots};
  }
};

TEST_F(BindgenTest, ZlibCompressesAndUncompressesABuffer) {
  ASSERT_OK_AND_ASSIGN(Library zlib_library, zlib::LoadLibrary(*session_));
  ASSERT_OK_AND_ASSIGN(auto version, zlib::zlibVersion(zlib_library));
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> version_text, version());
  EXPECT_EQ(version_text, std::string(zlib::ZLIB_VERSION));

  std::string text;
  for (int i = 0; i < 300; ++i) text += "ffibox bindgen ";
  const std::vector<unsigned char> source(text.begin(), text.end());
  ASSERT_OK_AND_ASSIGN(auto compress_bound, zlib::compressBound(zlib_library));
  ASSERT_OK_AND_ASSIGN(zlib::uLong bound, compress_bound(source.size()));
  std::vector<zlib::Bytef> packed(bound);
  zlib::uLongf packed_size = bound;
  ASSERT_OK_AND_ASSIGN(auto compress, zlib::compress(zlib_library));
  ASSERT_OK_AND_ASSIGN(int status, compress(absl::MakeSpan(packed), absl::MakeSpan(&packed_size, 1),
                                            absl::MakeConstSpan(source), source.size()));
  ASSERT_EQ(status, zlib::Z_OK);
  EXPECT_GT(packed_size, 0u);
  EXPECT_LT(packed_size, source.size() / 10);

  std::vector<zlib::Bytef> unpacked(source.size());
  zlib::uLongf unpacked_size = unpacked.size();
  ASSERT_OK_AND_ASSIGN(auto uncompress, zlib::uncompress(zlib_library));
  ASSERT_OK_AND_ASSIGN(status,
                       uncompress(absl::MakeSpan(unpacked), absl::MakeSpan(&unpacked_size, 1),
                                  absl::MakeConstSpan(packed.data(), packed_size), packed_size));
  ASSERT_EQ(status, zlib::Z_OK);
  EXPECT_EQ(unpacked_size, source.size());
  EXPECT_EQ(unpacked, source);
}

// gzgets(gzFile, char* buf, int len) writes a line into `buf`: a char* the header leaves
// non-const is a span carried both ways (as a string it came back as it went, and the
// library wrote past the worker's copy of it).
TEST_F(BindgenTest, ZlibFillsTheCharBufferItIsGiven) {
  ASSERT_OK_AND_ASSIGN(Library zlib_library, zlib::LoadLibrary(*session_));
  ASSERT_OK_AND_ASSIGN(auto gzopen, zlib::gzopen(zlib_library));
  ASSERT_OK_AND_ASSIGN(auto gzputs, zlib::gzputs(zlib_library));
  ASSERT_OK_AND_ASSIGN(auto gzgets, zlib::gzgets(zlib_library));
  ASSERT_OK_AND_ASSIGN(auto gzclose, zlib::gzclose(zlib_library));
  ASSERT_OK_AND_ASSIGN(RemotePtr written, gzopen("/tmp/lines.gz", "wb"));
  ASSERT_FALSE(written.is_null());
  ASSERT_OK_AND_ASSIGN(int put, gzputs(written, "the first line\nthe second\n"));
  EXPECT_EQ(put, 26);
  ASSERT_OK_AND_ASSIGN(int closed, gzclose(written));
  ASSERT_EQ(closed, zlib::Z_OK);
  ASSERT_OK_AND_ASSIGN(RemotePtr read, gzopen("/tmp/lines.gz", "rb"));
  ASSERT_FALSE(read.is_null());
  std::vector<char> line(64, 'x');
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> got,
                       gzgets(read, absl::MakeSpan(line), static_cast<int>(line.size())));
  EXPECT_EQ(got, "the first line\n");
  EXPECT_EQ(std::string(line.data()), "the first line\n");
  ASSERT_OK_AND_ASSIGN(closed, gzclose(read));
  EXPECT_EQ(closed, zlib::Z_OK);
}

TEST_F(BindgenTest, SqliteRunsAQueryInAnInMemoryDatabase) {
  ASSERT_OK_AND_ASSIGN(Library sqlite, sqlite3::LoadLibrary(*session_));
  ASSERT_OK_AND_ASSIGN(auto open, sqlite3::sqlite3_open(sqlite));
  ASSERT_OK_AND_ASSIGN(auto exec, sqlite3::sqlite3_exec(sqlite));
  ASSERT_OK_AND_ASSIGN(auto prepare, sqlite3::sqlite3_prepare_v2(sqlite));
  ASSERT_OK_AND_ASSIGN(auto step, sqlite3::sqlite3_step(sqlite));
  ASSERT_OK_AND_ASSIGN(auto column_int, sqlite3::sqlite3_column_int(sqlite));
  ASSERT_OK_AND_ASSIGN(auto column_text, sqlite3::sqlite3_column_text(sqlite));
  ASSERT_OK_AND_ASSIGN(auto finalize, sqlite3::sqlite3_finalize(sqlite));
  ASSERT_OK_AND_ASSIGN(auto close, sqlite3::sqlite3_close(sqlite));

  RemotePtr db;
  ASSERT_OK_AND_ASSIGN(int status, open(":memory:", &db));
  ASSERT_EQ(status, sqlite3::SQLITE_OK);
  RemotePtr error_message;
  ASSERT_OK_AND_ASSIGN(status, exec(db,
                                    "create table t(a integer, b text);"
                                    "insert into t values (7, 'seven'), (8, 'eight');",
                                    nullptr, nullptr, &error_message));
  ASSERT_EQ(status, sqlite3::SQLITE_OK);
  EXPECT_TRUE(error_message.is_null());

  RemotePtr statement;
  ASSERT_OK_AND_ASSIGN(status,
                       prepare(db, "select a * 6, b from t order by a", -1, &statement, nullptr));
  ASSERT_EQ(status, sqlite3::SQLITE_OK);
  ASSERT_OK_AND_ASSIGN(status, step(statement));
  ASSERT_EQ(status, sqlite3::SQLITE_ROW);
  ASSERT_OK_AND_ASSIGN(int product, column_int(statement, 0));
  EXPECT_EQ(product, 42);
  ASSERT_OK_AND_ASSIGN(RemotePtr text, column_text(statement, 1));
  ASSERT_OK_AND_ASSIGN(std::string value, session_->ReadCString(text));
  EXPECT_EQ(value, "seven");
  ASSERT_OK_AND_ASSIGN(status, step(statement));
  EXPECT_EQ(status, sqlite3::SQLITE_ROW);
  ASSERT_OK_AND_ASSIGN(status, step(statement));
  EXPECT_EQ(status, sqlite3::SQLITE_DONE);
  ASSERT_OK_AND_ASSIGN(status, finalize(statement));
  EXPECT_EQ(status, sqlite3::SQLITE_OK);
  ASSERT_OK_AND_ASSIGN(status, close(db));
  EXPECT_EQ(status, sqlite3::SQLITE_OK);
}

TEST_F(BindgenTest, TestLibraryRecordsSpansAndVariables) {
  ASSERT_OK_AND_ASSIGN(auto add_int, testlib::add_int(*lib_));
  ASSERT_OK_AND_ASSIGN(int sum, add_int(40, 2));
  EXPECT_EQ(sum, 42);
  // A described record by value, both ways.
  ASSERT_OK_AND_ASSIGN(auto swap_pair, testlib::swap_pair(*lib_));
  ASSERT_OK_AND_ASSIGN(testlib::IntPair swapped, swap_pair(testlib::IntPair{1, 2}));
  EXPECT_EQ(swapped.a, 2);
  EXPECT_EQ(swapped.b, 1);
  // const Point* with a count: a span of records.
  ASSERT_OK_AND_ASSIGN(auto total_x, testlib::total_x(*lib_));
  const std::vector<testlib::Point> points = {{1.5, 0}, {2.0, 0}, {-0.5, 9}};
  ASSERT_OK_AND_ASSIGN(double total, total_x(absl::MakeConstSpan(points), 3));
  EXPECT_DOUBLE_EQ(total, 3.0);
  // An array parameter (`const int a[5]`) is a pointer, so a span.
  ASSERT_OK_AND_ASSIGN(auto sum_array, testlib::sum_array(*lib_));
  const int five[] = {1, 2, 3, 4, 5};
  ASSERT_OK_AND_ASSIGN(sum, sum_array(absl::MakeConstSpan(five)));
  EXPECT_EQ(sum, 15);
  // int* out-parameters: spans of one.
  ASSERT_OK_AND_ASSIGN(auto divmod, testlib::divmod(*lib_));
  int quotient = 0, remainder = 0;
  ASSERT_OK_AND_ASSIGN(int status,
                       divmod(17, 5, absl::MakeSpan(&quotient, 1), absl::MakeSpan(&remainder, 1)));
  EXPECT_EQ(status, 0);
  EXPECT_EQ(quotient, 3);
  EXPECT_EQ(remainder, 2);
  // Exported variables.
  ASSERT_OK_AND_ASSIGN(int counter, testlib::ffibox_test_counter(*lib_));
  EXPECT_EQ(counter, 42);
  ASSERT_OK_AND_ASSIGN(testlib::Point origin, testlib::ffibox_origin(*lib_));
  EXPECT_EQ(origin.x, 1.5);
  EXPECT_EQ(origin.y, -2.5);
}

}  // namespace
}  // namespace ffibox
