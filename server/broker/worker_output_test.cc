#include "server/broker/worker_output.h"

#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"

namespace ffibox {
namespace {

class OutputBudgetTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(pipe2(pipe_, O_NONBLOCK), 0); }
  void TearDown() override {
    if (pipe_[0] >= 0) close(pipe_[0]);
    if (pipe_[1] >= 0) close(pipe_[1]);
  }
  void Write(const std::string& text) {
    ASSERT_EQ(write(pipe_[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
  }
  int pipe_[2] = {-1, -1};
  const absl::Time start_ = absl::FromUnixSeconds(1000);
};

TEST_F(OutputBudgetTest, RelaysWhatTheWorkerWrote) {
  OutputBudget budget(1024, 4096);
  Write("hello from the library\n");
  bool closed = true;
  std::optional<std::string> chunk = budget.Drain(pipe_[0], start_, &closed);
  ASSERT_TRUE(chunk.has_value());
  EXPECT_EQ(*chunk, "hello from the library\n");
  EXPECT_FALSE(closed);
  EXPECT_FALSE(budget.Drain(pipe_[0], start_, &closed).has_value());
  EXPECT_FALSE(closed);
}

TEST_F(OutputBudgetTest, DropsPastTheBudgetAndSaysSoLater) {
  OutputBudget budget(/*bytes_per_second=*/100, /*burst_bytes=*/100);
  bool closed = false;
  Write(std::string(80, 'a'));
  ASSERT_TRUE(budget.Drain(pipe_[0], start_, &closed).has_value());
  Write(std::string(50, 'b'));  // only 20 tokens left
  EXPECT_FALSE(budget.Drain(pipe_[0], start_, &closed).has_value());
  EXPECT_EQ(budget.dropped_total(), 50u);
  Write("later\n");  // a second later the bucket holds 100 tokens again
  std::optional<std::string> chunk = budget.Drain(pipe_[0], start_ + absl::Seconds(1), &closed);
  ASSERT_TRUE(chunk.has_value());
  EXPECT_NE(chunk->find("50 bytes of worker output dropped"), std::string::npos) << *chunk;
  EXPECT_EQ(chunk->substr(chunk->size() - 6), "later\n");
}

TEST_F(OutputBudgetTest, ReportsTheEndOfThePipe) {
  OutputBudget budget(1024, 4096);
  close(pipe_[1]);
  pipe_[1] = -1;
  bool closed = false;
  EXPECT_FALSE(budget.Drain(pipe_[0], start_, &closed).has_value());
  EXPECT_TRUE(closed);
}

}  // namespace
}  // namespace ffibox
