#!/usr/bin/env bash
# serve_client.sh — a serving client builds with the lines docs/tools.md gives, in C (mpicc.mpich
# -std=c11) and in C++ (mpicxx.mpich -std=c++17: the headers a client needs declare everything
# extern "C"; a C++ client failed to link with undefined mangled names), and opens bundles the
# way a server would: a missing file is RD_ERR_NOTFOUND, a folder and a FIFO RD_ERR_IO at once
# (a FIFO blocked rd_serve_open for ever), each message its own (the caller does not clear).
# The client also derives a key from a raw value (rd_feature_key_u64 of rd/hash.h) and opens a
# token store read-only (rd/tokens.h), as a server building requests from raw ids and fetching
# tokens does: a C++ client failed to link both (rd/hash.h and rd/tokens.h had no extern "C").
#
#   bash tests/scripts/serve_client.sh build/recdistill
set -u
RD="${1:?usage: serve_client.sh path/to/recdistill}"
case "$RD" in /*) ;; *) RD="$PWD/$RD" ;; esac
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
B="$(dirname "$RD")"
TMP="$(mktemp -d /tmp/rd_test_serve_client_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v mpicc.mpich >/dev/null || { echo "mpicc.mpich not found: skipped"; exit 77; }
LIBS=("$B/worker/librd_worker.a" "$B/ps/librd_ps.a" "$B/common/librd_common.a")
for l in "${LIBS[@]}"; do [ -f "$l" ] || { echo "$l not built: skipped"; exit 77; }; done
# A sanitizer build's libraries need the sanitizer runtimes linked in too (-DRD_SANITIZE=ON).
SAN=()
if nm "${LIBS[2]}" 2>/dev/null | grep -q __asan_; then
    SAN=("-fsanitize=address,undefined")
    export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
fi
cat >"$TMP/client.c" <<'C'
#include "rd/hash.h"
#include "rd/serve.h"
#include "rd/tokens.h"
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    for (int i = 1; i < argc; i++) {
        rd_serve *sv = NULL;
        int rc = rd_serve_open(argv[i], 16, &sv, &eb);
        printf("%d %s\n", rc, eb.msg);
        rd_serve_close(sv);
    }
    rd_token_store *st = NULL;
    rd_token_open_opts oo;
    memset(&oo, 0, sizeof oo);
    oo.mode = RD_TOKEN_READ_ONLY;
    int rc = rd_token_store_open(argv[1], &oo, &st, &eb);
    printf("%d %s\n", rc, eb.msg);
    rd_token_store_destroy(st);
    printf("key %llu\n", (unsigned long long)rd_feature_key_u64("hour", 3));
    return 0;
}
C
sed -e 's/#include <stdio.h>/#include <cstdio>/' -e 's/rd_serve \*sv = NULL/rd_serve *sv = nullptr/' \
    "$TMP/client.c" >"$TMP/client.cpp"
mkdir -p "$TMP/dir" && mkfifo "$TMP/fifo"
run_client() { # binary: every case's code and message
    timeout 20 "$1" "$TMP/none.rdsv" "$TMP/dir" "$TMP/fifo" >"$TMP/out" 2>"$TMP/err" ||
        fail "$1: exit $? (a FIFO must not block): $(cat "$TMP/err")"
    [ ! -s "$TMP/err" ] || fail "$1 wrote to stderr: $(cat "$TMP/err")"
    sed -n 1p "$TMP/out" | grep -q "^-10 $TMP/none.rdsv: No such file" || fail "missing: $(cat "$TMP/out")"
    sed -n 2p "$TMP/out" | grep -q "^-2 $TMP/dir: not a regular file (a folder)" || fail "folder: $(cat "$TMP/out")"
    sed -n 3p "$TMP/out" | grep -q "^-2 $TMP/fifo: not a regular file (a FIFO" || fail "fifo: $(cat "$TMP/out")"
    sed -n 4p "$TMP/out" | grep -q "^-10 .*$TMP/none.rdsv" || fail "token store: $(cat "$TMP/out")"
    sed -n 5p "$TMP/out" | grep -q "^key [1-9][0-9]*$" || fail "feature key: $(cat "$TMP/out")"
}
mpicc.mpich -std=c11 -Wall -Werror "${SAN[@]}" -I"$SRC/include" "$TMP/client.c" "${LIBS[@]}" \
    -lopenblas -llmdb -lyaml -lm -o "$TMP/client_c" 2>"$TMP/cc.err" || fail "C client: $(cat "$TMP/cc.err")"
run_client "$TMP/client_c"
if command -v mpicxx.mpich >/dev/null && command -v g++ >/dev/null; then
    mpicxx.mpich -std=c++17 -Wall -Werror "${SAN[@]}" -I"$SRC/include" "$TMP/client.cpp" "${LIBS[@]}" \
        -lopenblas -llmdb -lyaml -lm -o "$TMP/client_cxx" 2>"$TMP/cc.err" ||
        fail "C++ client: $(cat "$TMP/cc.err")"
    cp "$TMP/out" "$TMP/out_c"
    run_client "$TMP/client_cxx"
    cmp -s "$TMP/out" "$TMP/out_c" || fail "the C++ client differs: $(diff "$TMP/out_c" "$TMP/out")"
    echo "ok: C and C++ clients"
else
    echo "ok: C client (no mpicxx.mpich/g++: C++ not checked)"
fi
echo "serve_client.sh: ok"
