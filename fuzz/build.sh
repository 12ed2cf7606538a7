#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ into build-fuzz/ (ASan + UBSan, libFuzzer).
#
# Each target compiles only the persona sources it needs; the main CMake build is not used,
# except for the generated default schema (build/src/model/default_schema.inc), which is
# regenerated into build-fuzz/gen/ from schemas/default.yaml when build/ does not have it.
#
# Usage: fuzz/build.sh [target ...]     (default: all targets)
#   CXX=clang++-14 (default), OUT=build-fuzz (default), EXTRA_CXXFLAGS=...
# Objects are cached per source file in $OUT/obj/ and rebuilt only when the source, its
# flags or this script change (headers are tracked with -MMD), one compile at a time.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CXX="${CXX:-clang++-14}"
OUT="${OUT:-build-fuzz}"
mkdir -p "$OUT/obj" "$OUT/gen/model"

# The default schema is embedded in schema.cc from a generated header.
GEN_INC="$OUT/gen"
if [[ ! -f build/src/model/default_schema.inc ]]; then
  {
    echo "// Generated from schemas/default.yaml by fuzz/build.sh; do not edit."
    echo "#pragma once"
    echo "#include <string_view>"
    echo "inline constexpr char kDefaultSchemaYamlData[] ="
    printf '    R"persona_embed('
    cat schemas/default.yaml
    echo ')persona_embed"'
    echo ";"
    echo "inline constexpr std::string_view kDefaultSchemaYaml(kDefaultSchemaYamlData, sizeof(kDefaultSchemaYamlData) - 1);"
  } >"$GEN_INC/model/default_schema.inc.tmp"
  mv "$GEN_INC/model/default_schema.inc.tmp" "$GEN_INC/model/default_schema.inc"
fi

CXXFLAGS=(-std=c++20 -O1 -g -fno-omit-frame-pointer
          -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
          -I src -I build/src -I "$GEN_INC" ${EXTRA_CXXFLAGS:-})
# Persona's sources are compiled with the same sanitizers (and fuzzer coverage).

if pkg-config --exists absl_status absl_statusor absl_strings absl_cord 2>/dev/null; then
  read -r -a ABSL_LIBS <<<"$(pkg-config --libs absl_status absl_statusor absl_strings absl_cord)"
else
  ABSL_LIBS=(-labsl_statusor -labsl_status -labsl_cord -labsl_cordz_info -labsl_cord_internal
             -labsl_cordz_functions -labsl_cordz_handle -labsl_str_format_internal
             -labsl_strerror -labsl_synchronization -labsl_stacktrace -labsl_symbolize
             -labsl_strings -labsl_strings_internal -labsl_int128 -labsl_throw_delegate
             -labsl_raw_logging_internal -labsl_base -labsl_spinlock_wait)
fi

FLAGS_HASH="$( (printf '%s\n' "$CXX" "${CXXFLAGS[@]}"; cat "$0") | sha1sum | cut -c1-12)"

# compile SRC -> prints the object path
compile() {
  local src="$1"
  local obj="$OUT/obj/$(echo "$src" | tr '/' '_' | sed 's/\.cc$//').$FLAGS_HASH.o"
  local dep="${obj%.o}.d"
  local stale=0
  if [[ ! -f "$obj" ]]; then
    stale=1
  elif [[ -f "$dep" ]]; then
    # Any prerequisite newer than the object?
    for f in $(sed -e 's/^[^:]*://' -e 's/\\$//' "$dep"); do
      if [[ "$f" -nt "$obj" ]]; then stale=1; break; fi
    done
  fi
  if [[ $stale == 1 ]]; then
    echo "  CXX $src" >&2
    "$CXX" "${CXXFLAGS[@]}" -MMD -MF "$dep" -c "$src" -o "$obj"
  fi
  echo "$obj"
}

# link TARGET "srcs..." "libs..."
link() {
  local target="$1" srcs="$2" libs="$3"
  local objs=()
  local s o
  for s in fuzz/$target.cc $srcs; do
    o="$(compile "$s")" || exit 1
    objs+=("$o")
  done
  echo "  LINK $OUT/$target" >&2
  # shellcheck disable=SC2086
  "$CXX" "${CXXFLAGS[@]}" "${objs[@]}" -o "$OUT/$target" $libs
}

ALL=(mqtt_codec_fuzz event_json_fuzz http_request_fuzz aws_event_stream_fuzz model_output_fuzz jwt_fuzz)
TARGETS=("$@")
[[ ${#TARGETS[@]} -eq 0 ]] && TARGETS=("${ALL[@]}")

ABSL="${ABSL_LIBS[*]}"
for t in "${TARGETS[@]}"; do
  echo "building $t" >&2
  case "$t" in
    mqtt_codec_fuzz)
      link "$t" "src/realtime/mqtt/codec.cc src/realtime/mqtt/utf8.cc src/realtime/mqtt/topic_tree.cc" ""
      ;;
    event_json_fuzz)
      link "$t" "src/model/event.cc src/core/json.cc src/core/clock.cc" "-lboost_json $ABSL"
      ;;
    http_request_fuzz)
      link "$t" "src/core/json.cc" "-lboost_json -lboost_url $ABSL -lpthread"
      ;;
    aws_event_stream_fuzz)
      link "$t" "src/ai/bedrock/event_stream.cc" "$ABSL"
      ;;
    model_output_fuzz)
      # prompt.cc's ReplyFromModel falls back to the built-in rules, so ai/builtin links in.
      link "$t" "src/ai/llm/prompt.cc src/model/schema.cc src/core/json.cc \
                 src/ai/builtin/builtin_provider.cc src/ai/builtin/extract.cc \
                 src/ai/builtin/cities.cc src/ai/builtin/text.cc" \
           "-lyaml-cpp -lboost_json $ABSL"
      ;;
    jwt_fuzz)
      link "$t" "src/auth/jwt.cc src/core/base64.cc src/core/ids.cc src/core/json.cc \
                 src/core/status.cc" "-lboost_json -lcrypto $ABSL"
      ;;
    *)
      echo "unknown target: $t (known: ${ALL[*]})" >&2
      exit 2
      ;;
  esac
done
echo "built: ${TARGETS[*]} in $OUT/" >&2
