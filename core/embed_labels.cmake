# Turns the labels text file into a C++ source (run at build time by core/CMakeLists.txt).
file(READ "${INPUT}" text)
file(WRITE "${OUTPUT}" "namespace vitbatch {\nextern const char* const kImagenet1kLabelsText;\nconst char* const kImagenet1kLabelsText = R\"vitbatch_labels(${text})vitbatch_labels\";\n}\n")
