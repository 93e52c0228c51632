// labels.hpp: class names as they are written in the output. The ImageNet-1k list is compiled
// in (core/data/imagenet1k.txt, synonyms separated by ", "): each class is shown by its first
// name, made unique. A --labels file is taken whole, one name per line.
#pragma once

#include <string>
#include <vector>

namespace vitbatch {

// The 1000 ImageNet-1k display names: the first synonym of each class, except where two
// classes share it (134 and 517 "crane", 638 and 639 "maillot"): those are disambiguated.
const std::vector<std::string>& imagenet1k_labels();
// The 1000 ImageNet-1k WordNet ids ("n01440764", ...) in class order.
const std::vector<std::string>& imagenet1k_wnids();
// Reads one label per line, kept whole (commas included); CR LF line ends and trailing blank
// lines are accepted. Throws Error naming the file and line for a blank line before the last
// label (it would shift every later class), or an unreadable file.
std::vector<std::string> load_labels(const std::string& path);
// The first name of a synonym list: "tabby" of "tabby, tabby cat".
std::string first_name(const std::string& label);
// First names made unique: a name shared by several classes takes the class's next synonym
// when it has one, else a suffix from `qualifiers` (index -> " (bird)"), else " (class N)".
std::vector<std::string> unique_first_names(const std::vector<std::string>& synonym_lists,
                                            const std::vector<std::pair<int, std::string>>& qualifiers = {});

}  // namespace vitbatch
