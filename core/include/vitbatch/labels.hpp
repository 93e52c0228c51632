// labels.hpp: class names. The ImageNet-1k list is compiled in (core/data/imagenet1k.txt).
#pragma once

#include <string>
#include <vector>

namespace vitbatch {

// One line per class, synonyms separated by ", " ("tabby, tabby cat").
const std::vector<std::string>& imagenet1k_labels();
// Reads one label per line; throws Error naming the file.
std::vector<std::string> load_labels(const std::string& path);
// The first name of a class: "Egyptian cat" of "Egyptian cat".
std::string first_name(const std::string& label);

}  // namespace vitbatch
