#include "core/call_answer.h"

#include <string>

#include "gtest/gtest.h"

namespace ffibox {
namespace {

// A call with an INOUT block of 64 bytes in the frame, then an OUT block of 1 MiB in the
// same-host channel's shared area.
v1::Call CallWithASharedBlock() {
  v1::Call call;
  v1::MemoryBlock* framed = call.add_blocks();
  framed->set_size(64);
  framed->set_direction(v1::INOUT);
  v1::MemoryBlock* shared = call.add_blocks();
  shared->set_size(1 << 20);
  shared->set_direction(v1::OUT);
  shared->set_shared_offset(0);
  return call;
}

v1::CallResult HonestResult() {
  v1::CallResult result;
  v1::BlockContents* framed = result.add_blocks();
  framed->set_block(0);
  framed->set_data(std::string(64, 'a'));
  v1::BlockContents* shared = result.add_blocks();
  shared->set_block(1);
  shared->set_shared(true);
  return result;
}

TEST(CheckCallResult, ABlockInTheSharedAreaComesBackMarkedAndEmpty) {
  const ExpectedCallResult expected = ExpectedResultOf(CallWithASharedBlock());
  EXPECT_TRUE(CheckCallResult(HonestResult(), expected).ok());
}

TEST(CheckCallResult, AWorkerCannotMoveBlocksInOrOutOfTheSharedArea) {
  const ExpectedCallResult expected = ExpectedResultOf(CallWithASharedBlock());
  v1::CallResult unmarked = HonestResult();
  unmarked.mutable_blocks(1)->set_shared(false);
  unmarked.mutable_blocks(1)->set_data(std::string(1 << 20, 'b'));
  EXPECT_FALSE(CheckCallResult(unmarked, expected).ok()) << "bytes in the frame instead";
  v1::CallResult claimed = HonestResult();
  claimed.mutable_blocks(0)->set_shared(true);
  claimed.mutable_blocks(0)->clear_data();
  EXPECT_FALSE(CheckCallResult(claimed, expected).ok()) << "a framed block claimed as shared";
  v1::CallResult with_data = HonestResult();
  with_data.mutable_blocks(1)->set_data("x");
  EXPECT_FALSE(CheckCallResult(with_data, expected).ok()) << "data beside the mark";
  v1::CallResult with_pointers = HonestResult();
  v1::Relocation* pointer = with_pointers.mutable_blocks(1)->add_pointers();
  pointer->set_offset(0);
  pointer->mutable_target()->set_block(0);
  EXPECT_FALSE(CheckCallResult(with_pointers, expected).ok()) << "pointers in a shared block";
  // Off the channel no block may claim the area.
  v1::Call framed_only;
  framed_only.add_blocks()->set_size(64);
  v1::CallResult marked;
  v1::BlockContents* block = marked.add_blocks();
  block->set_block(0);
  block->set_shared(true);
  EXPECT_FALSE(CheckCallResult(marked, ExpectedResultOf(framed_only)).ok());
}

// A lasting block whose bytes travelled in the area is scanned as any lasting block: its
// pointers are reported, and checked.
TEST(CheckCallResult, ALastingBlockThroughTheSharedAreaMayReportPointers) {
  v1::Call call = CallWithASharedBlock();
  call.mutable_blocks(1)->set_keep(true);
  const ExpectedCallResult expected = ExpectedResultOf(call);
  v1::CallResult result = HonestResult();
  v1::KeptBlock* kept = result.add_kept();
  kept->set_block(1);
  kept->mutable_address()->set_address(0x10000);
  v1::Relocation* pointer = result.mutable_blocks(1)->add_pointers();
  pointer->set_offset(8);
  pointer->mutable_target()->set_block(0);
  EXPECT_TRUE(CheckCallResult(result, expected).ok());
  pointer->set_offset((1 << 20) - 4);  // the word would overrun the block
  EXPECT_FALSE(CheckCallResult(result, expected).ok());
}

// What a client on the same-host channel checks of the answers to its requests inside an
// invocation there: the result each operation produces, exact sizes, no result beside an
// error.
TEST(CheckNestedAnswer, EachOperationGetsItsOwnResultOfTheSizeAskedFor) {
  v1::Request read;
  read.mutable_read_memory()->set_size(4);
  v1::Response answer;
  answer.mutable_memory()->set_data("abcd");
  EXPECT_TRUE(CheckNestedAnswer(read, answer).ok());
  answer.mutable_memory()->set_data("abcdefgh");  // more than asked for
  EXPECT_FALSE(CheckNestedAnswer(read, answer).ok());
  answer.Clear();
  answer.mutable_done();  // another operation's result
  EXPECT_FALSE(CheckNestedAnswer(read, answer).ok());

  v1::Request typed;
  typed.mutable_read_memory()->mutable_type()->set_scalar(v1::INT32);
  answer.Clear();
  answer.mutable_memory()->mutable_value()->set_raw("abcd");
  EXPECT_TRUE(CheckNestedAnswer(typed, answer).ok());
  answer.mutable_memory()->mutable_value()->set_raw("abcdabcd");
  EXPECT_FALSE(CheckNestedAnswer(typed, answer).ok());

  v1::Request write;
  write.mutable_write_memory()->set_data("x");
  answer.Clear();
  answer.mutable_done();
  EXPECT_TRUE(CheckNestedAnswer(write, answer).ok());
  v1::Request string;
  string.mutable_read_string();
  EXPECT_FALSE(CheckNestedAnswer(string, answer).ok());
  v1::Request layout;
  layout.mutable_get_layout();
  EXPECT_FALSE(CheckNestedAnswer(layout, answer).ok());
  answer.Clear();
  answer.mutable_layout();
  EXPECT_TRUE(CheckNestedAnswer(layout, answer).ok());
}

TEST(CheckNestedAnswer, AReadListGetsOneReadOfTheSizeAskedForPerRead) {
  v1::Request list;
  list.mutable_read_memory_list()->add_reads()->set_size(2);
  list.mutable_read_memory_list()->add_reads()->mutable_type()->set_scalar(v1::INT32);
  v1::Response answer;
  answer.mutable_memory_list()->add_reads()->set_data("ab");
  answer.mutable_memory_list()->add_reads()->mutable_value()->set_int_value(7);
  EXPECT_TRUE(CheckNestedAnswer(list, answer).ok());
  answer.mutable_memory_list()->mutable_reads(0)->set_data("abc");  // more than asked for
  EXPECT_FALSE(CheckNestedAnswer(list, answer).ok());
  answer.mutable_memory_list()->mutable_reads(0)->set_data("ab");
  answer.mutable_memory_list()->add_reads()->set_data("ab");  // a read more than asked
  EXPECT_FALSE(CheckNestedAnswer(list, answer).ok());
  answer.mutable_memory_list()->mutable_reads()->RemoveLast();
  answer.mutable_memory_list()->mutable_reads()->RemoveLast();  // one fewer
  EXPECT_FALSE(CheckNestedAnswer(list, answer).ok());
  answer.Clear();
  answer.mutable_memory()->set_data("ab");  // read_memory's result
  EXPECT_FALSE(CheckNestedAnswer(list, answer).ok());
}

TEST(CheckNestedAnswer, AnErrorCarriesNoResultAndOnlyWhatTheWorkerMayReport) {
  v1::Request read;
  read.mutable_read_memory()->set_size(4);
  v1::Response answer;
  answer.mutable_error()->set_code(v1::MEMORY_FAULT);
  EXPECT_TRUE(CheckNestedAnswer(read, answer).ok());
  answer.mutable_memory()->set_data("abcd");
  EXPECT_FALSE(CheckNestedAnswer(read, answer).ok());
  answer.clear_memory();
  answer.mutable_error()->set_code(v1::WORKER_CRASHED);  // only the broker says that
  EXPECT_FALSE(CheckNestedAnswer(read, answer).ok());
  answer.mutable_error()->set_code(v1::MEMORY_FAULT);
  answer.mutable_error()->set_never_reached_worker(true);  // and that
  EXPECT_FALSE(CheckNestedAnswer(read, answer).ok());
  v1::Request load;
  load.mutable_load_library();
  EXPECT_FALSE(CheckNestedAnswer(load, answer).ok());
}

}  // namespace
}  // namespace ffibox
