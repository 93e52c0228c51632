// versions.hpp: vitbatch's version and the versions of the libraries core is linked with
// (for --version and bug reports).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace vitbatch {

extern const std::string kVersion;
// ("libjpeg-turbo", "2.1.5"), ("libpng", "1.6.39"), ...: as each library reports itself at
// run time where it can, else as its headers said at build time.
std::vector<std::pair<std::string, std::string>> library_versions();

}  // namespace vitbatch
