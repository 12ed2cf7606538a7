# Writes IN as a C++ raw string constant named IDENT into OUT.
file(READ ${IN} content)
set(delim "persona_embed")
file(WRITE ${OUT} "// Generated from ${IN}; do not edit.\n#pragma once\n#include <string_view>\n")
# Raw string literals are limited per token by some compilers; split in chunks.
string(LENGTH "${content}" len)
set(chunk 16000)
set(pos 0)
# A char array plus sizeof: no constexpr strlen over large files.
file(APPEND ${OUT} "inline constexpr char ${IDENT}Data[] =\n")
if(len EQUAL 0)
  file(APPEND ${OUT} "    \"\"")
endif()
while(pos LESS len)
  string(SUBSTRING "${content}" ${pos} ${chunk} part)
  file(APPEND ${OUT} "    R\"${delim}(${part})${delim}\"\n")
  math(EXPR pos "${pos} + ${chunk}")
endwhile()
file(APPEND ${OUT} ";\ninline constexpr std::string_view ${IDENT}(${IDENT}Data, sizeof(${IDENT}Data) - 1);\n")
