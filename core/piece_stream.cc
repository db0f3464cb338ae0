#include "core/piece_stream.h"

#include <algorithm>
#include <climits>

namespace ffibox {

absl::string_view PieceInputStream::Remaining() {
  while (current_ < pieces_.size() && offset_ == pieces_[current_].size()) {
    release_(current_);
    pieces_[current_] = absl::string_view();
    ++current_;
    offset_ = 0;
  }
  if (current_ == pieces_.size()) return absl::string_view();
  return pieces_[current_].substr(offset_);
}

bool PieceInputStream::Next(const void** data, int* size) {
  absl::string_view next = Remaining();
  if (next.empty()) return false;
  next = next.substr(0, INT_MAX);
  *data = next.data();
  *size = static_cast<int>(next.size());
  offset_ += next.size();
  position_ += static_cast<int64_t>(next.size());
  return true;
}

void PieceInputStream::BackUp(int count) {
  // Only bytes of the last Next, which all came from the current piece.
  const size_t back = std::min<size_t>(static_cast<size_t>(std::max(count, 0)), offset_);
  offset_ -= back;
  position_ -= static_cast<int64_t>(back);
}

bool PieceInputStream::Skip(int count) {
  size_t left = static_cast<size_t>(std::max(count, 0));
  while (left > 0) {
    absl::string_view next = Remaining();
    if (next.empty()) return false;
    const size_t step = std::min(left, next.size());
    offset_ += step;
    position_ += static_cast<int64_t>(step);
    left -= step;
  }
  return true;
}

}  // namespace ffibox
