// error.hpp: the one exception type core throws. Its message is one line, ready for a user:
// it names the file, tensor, node or key at fault and the reason.
#pragma once

#include <stdexcept>
#include <string>

namespace vitbatch {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace vitbatch
