# Turns a text file into a C++ source defining `const char* const ${SYMBOL}` (run at build
# time by core/CMakeLists.txt): the labels and the timm architecture table ship inside the
# binary, so vitbatch needs no data directory at run time.
file(READ "${INPUT}" text)
file(WRITE "${OUTPUT}" "namespace vitbatch {\nextern const char* const ${SYMBOL};\nconst char* const ${SYMBOL} = R\"vitbatch_text(${text})vitbatch_text\";\n}\n")
