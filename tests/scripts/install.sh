#!/usr/bin/env bash
# install.sh — `cmake --install` gives a tree a program can be built against and moved: the
# program (bin/), the static libraries (lib/), the public headers (include/rd/) and recdistill.pc.
# Checks that the installed program is the built one; that every public header compiles on its
# own with the .pc file's flags and a plain C11 compiler (no MPI wrapper), and as C++17; that every
# library function a public header declares links from C++ (extern "C": a header without it gave
# undefined mangled names); that a serving client built with `pkg-config --cflags --libs
# recdistill`, in C and in C++, scores the committed bundles as a client of the build tree does;
# and that after the tree is moved the .pc file still points into it.
#
#   bash tests/scripts/install.sh build/recdistill
set -u
RD="${1:?usage: install.sh path/to/recdistill}"
case "$RD" in /*) ;; *) RD="$PWD/$RD" ;; esac
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
B="$(dirname "$RD")"
TMP="$(mktemp -d /tmp/rd_test_install_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
for t in cmake pkg-config cc; do
    command -v "$t" >/dev/null || { echo "$t not found: skipped"; exit 77; }
done
[ -f "$B/cmake_install.cmake" ] || { echo "$B is not a CMake build folder: skipped"; exit 77; }
# A sanitizer build's libraries need the sanitizer runtimes linked in too (-DRD_SANITIZE=ON).
SAN=()
if nm "$B/common/librd_common.a" 2>/dev/null | grep -q __asan_; then
    SAN=("-fsanitize=address,undefined")
    export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
fi

cmake --install "$B" --prefix "$TMP/p" >"$TMP/install.log" 2>&1 ||
    fail "cmake --install: $(tail -5 "$TMP/install.log")"
P="$TMP/p"
[ -x "$P/bin/recdistill" ] || fail "no bin/recdistill"
PC="$(find "$P" -name recdistill.pc -path '*/pkgconfig/*')"
[ -n "$PC" ] || fail "no pkgconfig/recdistill.pc under the prefix"
for l in rd_worker rd_ps rd_common; do
    [ -n "$(find "$P" -name "lib$l.a")" ] || fail "no lib$l.a"
done
# Every public header, and only those.
want="$(find "$SRC/include/rd" -maxdepth 1 -name '*.h' -printf '%f\n' | sort)"
got="$(find "$P/include/rd" -maxdepth 1 -name '*.h' -printf '%f\n' | sort)"
[ "$want" = "$got" ] || fail "installed headers differ from include/rd: $(diff <(echo "$want") <(echo "$got"))"
# The installed program is the built one (same build identity).
v1="$("$RD" --version)" || fail "$RD --version failed"
v2="$("$P/bin/recdistill" --version)" || fail "the installed recdistill --version failed"
[ "$v1" = "$v2" ] || fail "installed program '$v2' is not the built '$v1'"

PKG_CONFIG_PATH="$(dirname "$PC")"
export PKG_CONFIG_PATH
pkg-config --exists recdistill || fail "pkg-config cannot read $PC: $(pkg-config --print-errors recdistill 2>&1)"
read -r -a CFLAGS <<<"$(pkg-config --cflags recdistill)"
read -r -a LIBS <<<"$(pkg-config --libs recdistill)"
n=0
for h in "$P"/include/rd/*.h; do
    printf '#include "rd/%s"\n' "$(basename "$h")" >"$TMP/h.c"
    cc -std=c11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only "${CFLAGS[@]}" "$TMP/h.c" \
        2>"$TMP/h.err" || fail "rd/$(basename "$h") does not compile on its own: $(head -3 "$TMP/h.err")"
    n=$((n + 1))
done
echo "ok: $n headers compile on their own"

# C++: each C++ compiler there is (g++ comes with build-essential, clang++ with install-deps.sh
# --ci), the first one also for the link check and the client below.
CXXS=()
for c in g++ clang++; do command -v "$c" >/dev/null && CXXS+=("$c"); done
if [ "${#CXXS[@]}" -eq 0 ] && command -v c++ >/dev/null; then CXXS=(c++); fi
if [ "${#CXXS[@]}" -gt 0 ]; then
    for cxx in "${CXXS[@]}"; do
        for h in "$P"/include/rd/*.h; do
            printf '#include "rd/%s"\n' "$(basename "$h")" >"$TMP/h.cpp"
            "$cxx" -std=c++17 -Wall -Wextra -Wpedantic -Werror -fsyntax-only "${CFLAGS[@]}" \
                "$TMP/h.cpp" 2>"$TMP/h.err" ||
                fail "rd/$(basename "$h") does not compile as C++17 ($cxx): $(head -3 "$TMP/h.err")"
        done
    done
    echo "ok: $n headers compile on their own as C++17 (${CXXS[*]})"
    # Every function the libraries define and a public header declares (its name is in the
    # preprocessed headers, where comments are gone), referenced from C++: a declaration outside
    # extern "C" is a reference to a mangled name, which the libraries do not define.
    for h in "$P"/include/rd/*.h; do
        printf '#include "rd/%s"\n' "$(basename "$h")"
    done >"$TMP/all.h"
    cc -std=c11 -E -P "${CFLAGS[@]}" -x c "$TMP/all.h" 2>"$TMP/cc.err" >"$TMP/all.i" ||
        fail "the headers together: $(head -3 "$TMP/cc.err")"
    grep -ow 'rd_[A-Za-z0-9_]*' "$TMP/all.i" | LC_ALL=C sort -u >"$TMP/names"
    find "$P" -name 'librd_*.a' -exec nm -g --defined-only {} + 2>/dev/null |
        awk 'NF == 3 && ($2 == "T" || $2 == "i") { print $3 }' | LC_ALL=C sort -u >"$TMP/defined"
    LC_ALL=C comm -12 "$TMP/defined" "$TMP/names" >"$TMP/declared"
    nf="$(wc -l <"$TMP/declared")"
    [ "$nf" -gt 100 ] || fail "only $nf library functions found in the headers"
    {
        cat "$TMP/all.h"
        echo 'using rd_fn = void (*)();'
        echo 'extern const rd_fn rd_functions[];'
        echo 'const rd_fn rd_functions[] = {'
        sed 's/.*/    reinterpret_cast<rd_fn>(\&&),/' "$TMP/declared"
        echo '};'
        echo 'int main() { return rd_functions[0] == nullptr; }'
    } >"$TMP/link.cpp"
    "${CXXS[0]}" -std=c++17 -Wall -Wextra -Werror "${SAN[@]}" "${CFLAGS[@]}" "$TMP/link.cpp" \
        "${LIBS[@]}" -o "$TMP/link" 2>"$TMP/cc.err" ||
        fail "C++ references to the headers' functions: $(grep -m5 -i 'undefined\|error' "$TMP/cc.err")"
    "$TMP/link" || fail "the C++ program referencing every function does not run"
    echo "ok: $nf library functions the headers declare link from C++ (${CXXS[0]})"
else
    echo "no C++ compiler (g++, clang++, c++): C++ not checked (tools/install-deps.sh installs g++)"
fi

cat >"$TMP/client.c" <<'C'
#include "rd/serve.h"
#include <stdio.h>
#include <stdlib.h>
// Scores two candidates with keys 1..2K, an empty history and zero numeric inputs.
int main(int argc, char **argv) {
    for (int a = 1; a < argc; a++) {
        rd_errbuf eb;
        rd_serve *sv = NULL;
        if (rd_serve_open(argv[a], 2, &sv, &eb) != RD_OK) {
            fprintf(stderr, "%s\n", eb.msg);
            return 1;
        }
        rd_serve_info in;
        rd_serve_get_info(sv, &in);
        size_t n = 2, K = in.keys_per_candidate;
        uint64_t *keys = calloc(n * K + 1, sizeof *keys);
        uint64_t *hist = calloc(in.hist_len + 1, sizeof *hist);
        float *num = calloc(n * in.n_numeric + 1, sizeof *num);
        uint64_t items[2] = {1, 2};
        float sc[2];
        for (size_t i = 0; i < n * K; i++)
            keys[i] = i + 1;
        rd_serve_request rq = {.n = n,
                               .keys = keys,
                               .hist_items = in.hist_len ? hist : NULL,
                               .numeric = in.n_numeric ? num : NULL,
                               .items = items};
        if (rd_serve_score(sv, &rq, sc, NULL, &eb) != RD_OK) {
            fprintf(stderr, "%s\n", eb.msg);
            return 1;
        }
        printf("%s %.9g %.9g\n", in.model, (double)sc[0], (double)sc[1]);
        free(keys);
        free(hist);
        free(num);
        rd_serve_close(sv);
    }
    return 0;
}
C
BUNDLES=("$SRC"/tests/fuzz/corpus/serve/tiny-v*)
[ -f "${BUNDLES[0]}" ] || fail "no committed bundles tests/fuzz/corpus/serve/tiny-v*"
# The reference: the same client against the build tree's libraries.
mpicc.mpich -std=c11 -Wall -Werror "${SAN[@]}" -D_POSIX_C_SOURCE=200809L -I"$SRC/include" \
    "$TMP/client.c" "$B/worker/librd_worker.a" "$B/ps/librd_ps.a" "$B/common/librd_common.a" \
    -lopenblas -llmdb -lyaml -lm -o "$TMP/ref" 2>"$TMP/cc.err" || fail "build-tree client: $(cat "$TMP/cc.err")"
"$TMP/ref" "${BUNDLES[@]}" >"$TMP/ref.out" || fail "build-tree client failed"
cc -std=c11 -Wall -Werror "${SAN[@]}" "${CFLAGS[@]}" "$TMP/client.c" "${LIBS[@]}" -o "$TMP/client" \
    2>"$TMP/cc.err" || fail "client with pkg-config --cflags --libs recdistill: $(cat "$TMP/cc.err")"
"$TMP/client" "${BUNDLES[@]}" >"$TMP/out" || fail "installed-library client failed"
cmp -s "$TMP/ref.out" "$TMP/out" || fail "scores differ: $(diff "$TMP/ref.out" "$TMP/out")"
echo "ok: a client built with pkg-config scores ${#BUNDLES[@]} bundles as the build tree's does"
if [ "${#CXXS[@]}" -gt 0 ]; then
    cat >"$TMP/client.cpp" <<'CXX'
// The C client above in C++17 (no designated initialisers, no void * conversions), same output.
#include "rd/serve.h"
#include <cstdint>
#include <cstdio>
#include <vector>
int main(int argc, char **argv) {
    for (int a = 1; a < argc; a++) {
        rd_errbuf eb;
        rd_serve *sv = nullptr;
        if (rd_serve_open(argv[a], 2, &sv, &eb) != RD_OK) {
            std::fprintf(stderr, "%s\n", eb.msg);
            return 1;
        }
        rd_serve_info in;
        rd_serve_get_info(sv, &in);
        const size_t n = 2, K = in.keys_per_candidate;
        std::vector<uint64_t> keys(n * K + 1), hist(in.hist_len + 1);
        std::vector<float> num(n * in.n_numeric + 1);
        const uint64_t items[2] = {1, 2};
        float sc[2];
        for (size_t i = 0; i < n * K; i++)
            keys[i] = i + 1;
        rd_serve_request rq{};
        rq.n = n;
        rq.keys = keys.data();
        rq.hist_items = in.hist_len ? hist.data() : nullptr;
        rq.numeric = in.n_numeric ? num.data() : nullptr;
        rq.items = items;
        if (rd_serve_score(sv, &rq, sc, nullptr, &eb) != RD_OK) {
            std::fprintf(stderr, "%s\n", eb.msg);
            return 1;
        }
        std::printf("%s %.9g %.9g\n", in.model, (double)sc[0], (double)sc[1]);
        rd_serve_close(sv);
    }
    return 0;
}
CXX
    "${CXXS[0]}" -std=c++17 -Wall -Wextra -Werror "${SAN[@]}" "${CFLAGS[@]}" "$TMP/client.cpp" \
        "${LIBS[@]}" -o "$TMP/client_cxx" 2>"$TMP/cc.err" ||
        fail "C++ client with pkg-config --cflags --libs recdistill: $(cat "$TMP/cc.err")"
    "$TMP/client_cxx" "${BUNDLES[@]}" >"$TMP/out_cxx" || fail "installed-library C++ client failed"
    cmp -s "$TMP/ref.out" "$TMP/out_cxx" ||
        fail "C++ client scores differ: $(diff "$TMP/ref.out" "$TMP/out_cxx")"
    echo "ok: a C++ client built with pkg-config scores the ${#BUNDLES[@]} bundles as the C one does"
fi

# Moved: the .pc file finds the prefix from its own folder.
mv "$P" "$TMP/moved"
PC_REL="${PC#"$P"/}"
PKG_CONFIG_PATH="$TMP/moved/$(dirname "$PC_REL")"
read -r -a CFLAGS <<<"$(pkg-config --cflags recdistill)"
read -r -a LIBS <<<"$(pkg-config --libs recdistill)"
cc -std=c11 -Wall -Werror "${SAN[@]}" "${CFLAGS[@]}" "$TMP/client.c" "${LIBS[@]}" -o "$TMP/client2" \
    2>"$TMP/cc.err" || fail "client against the moved tree: $(cat "$TMP/cc.err")"
"$TMP/client2" "${BUNDLES[@]}" >"$TMP/out2" || fail "client against the moved tree failed"
cmp -s "$TMP/ref.out" "$TMP/out2" || fail "client against the moved tree scores otherwise"
"$TMP/moved/bin/recdistill" --version >/dev/null || fail "the moved program does not start"
echo "ok: the installed tree works after a move"
echo "install.sh: ok"
