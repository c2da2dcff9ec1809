#!/usr/bin/env bash
# Builds tests/consumer/app.c against unroll the five ways a user's project
# consumes it, and runs it each time:
#   1. find_package(unroll) against a static install,
#   2. the same against a shared install (the program must link the .so),
#   3. pkg-config (--static against the static install, plain against the shared one) and cc,
#   4. add_subdirectory from a parent project (no unroll tests, examples or bench
#      targets; the parent's flags and build type untouched),
#   5. the Debian package (cpack -G DEB), unpacked into a scratch root with dpkg -x.
# Usage: tests/consumer/run.sh [WORK_DIR]   (default: build-consumer)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mkdir -p "${1:-$src/build-consumer}" && cd "${1:-$src/build-consumer}" && pwd)
jobs=$(nproc 2>/dev/null || echo 2)
here=$src/tests/consumer
version=$(sed -n 's/^project(unroll VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
rm -rf "$work"/*

say() { printf '\n== consumer: %s\n' "$*"; }
fail() { printf 'consumer: FAILED: %s\n' "$*" >&2; exit 1; }
# ldd's output is read whole first: with pipefail, `ldd | grep -q` fails when
# grep stops reading early.
links() { local out; out=$(ldd "$1"); grep -q -- "$2" <<< "$out"; }
run_app() { # the program must run and pass its gradient check
  "$@" > "$work/app.out" 2>&1 || { cat "$work/app.out"; fail "$* exited non-zero"; }
  grep -q "^unroll $version: loss" "$work/app.out" || { cat "$work/app.out"; fail "$*: no loss line"; }
  tail -n 1 "$work/app.out"
}

# The two library builds (prefix /usr, as the Debian package wants), each
# installed into its own temporary prefix: the CMake and pkg-config files
# are relocatable.
for kind in static shared; do
  shared=OFF
  [ $kind = shared ] && shared=ON
  cmake -S "$src" -B "$work/lib-$kind" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=$shared \
    -DUNROLL_BUILD_TESTS=OFF -DUNROLL_BUILD_EXAMPLES=OFF -DUNROLL_BUILD_BENCH=OFF \
    -DUNROLL_NATIVE=OFF -DCMAKE_INSTALL_PREFIX=/usr > "$work/lib-$kind.log"
  cmake --build "$work/lib-$kind" -j "$jobs" >> "$work/lib-$kind.log"
  cmake --install "$work/lib-$kind" --prefix "$work/prefix-$kind" >> "$work/lib-$kind.log"
done

say "1. find_package(unroll), static install"
cmake -S "$here" -B "$work/c1" -DCMAKE_PREFIX_PATH="$work/prefix-static" > /dev/null
cmake --build "$work/c1" > /dev/null
links "$work/c1/app" libunroll && fail "static route: app links a shared unroll"
run_app "$work/c1/app"

say "2. find_package(unroll), shared install"
cmake -S "$here" -B "$work/c2" -DCMAKE_PREFIX_PATH="$work/prefix-shared" > /dev/null
cmake --build "$work/c2" > /dev/null
links "$work/c2/app" "libunroll_nn.so.${version%.*} => $work/prefix-shared" ||
  fail "shared route: app does not link $work/prefix-shared's libunroll_nn.so"
links "$work/c2/app" "libunroll_autodiff.so.${version%.*} => $work/prefix-shared" ||
  fail "shared route: app does not link $work/prefix-shared's libunroll_autodiff.so"
run_app "$work/c2/app"

say "3. pkg-config and cc"
pc_static=$(find "$work/prefix-static" -name unroll.pc -printf '%h')
pc_shared=$(find "$work/prefix-shared" -name unroll.pc -printf '%h')
[ "$(PKG_CONFIG_PATH=$pc_static pkg-config --modversion unroll)" = "$version" ] ||
  fail "pkg-config --modversion is not $version"
# shellcheck disable=SC2046
cc -std=c11 -o "$work/c3-static" "$here/app.c" \
  $(PKG_CONFIG_PATH=$pc_static pkg-config --cflags --libs --static unroll)
links "$work/c3-static" libunroll && fail "pkg-config --static: app links a shared unroll"
run_app "$work/c3-static"
libdir=$(PKG_CONFIG_PATH=$pc_shared pkg-config --variable=libdir unroll)
# shellcheck disable=SC2046
cc -std=c11 -o "$work/c3-shared" "$here/app.c" \
  $(PKG_CONFIG_PATH=$pc_shared pkg-config --cflags --libs unroll) -Wl,-rpath,"$libdir"
links "$work/c3-shared" "libunroll_nn.so" || fail "pkg-config: app does not link libunroll_nn.so"
run_app "$work/c3-shared"

say "4. add_subdirectory from a parent project"
cmake -S "$here/parent" -B "$work/c4" -DUNROLL_SOURCE="$src" > "$work/c4.log"
cmake --build "$work/c4" -j "$jobs" > "$work/c4-build.log"
targets=$(cmake --build "$work/c4" --target help)
for t in unroll_bench char_rnn fit_sine test_tape test_nn_rnn; do
  grep -q -w "$t" <<< "$targets" && fail "subproject built the target $t"
done
grep -q -x 'CMAKE_C_FLAGS=-DPARENT_FLAGS_UNTOUCHED' "$work/c4/parent_state.txt" &&
  grep -q -x 'CMAKE_BUILD_TYPE=' "$work/c4/parent_state.txt" &&
  grep -q -x 'COMPILE_OPTIONS=' "$work/c4/parent_state.txt" ||
  { cat "$work/c4/parent_state.txt"; fail "subproject changed the parent's flags or build type"; }
# The parent's own program is compiled with the parent's flags only.
grep -q -- "-Werror\|-march=native" "$work/c4/CMakeFiles/app.dir/flags.make" &&
  fail "unroll's flags leaked into the parent's target"
run_app "$work/c4/app"

say "5. the Debian package"
(cd "$work" && cpack -G DEB --config "$work/lib-shared/CPackConfig.cmake" \
  -D CPACK_INSTALL_CMAKE_PROJECTS="$work/lib-static;unroll;ALL;/;$work/lib-shared;unroll;ALL;/" \
  > "$work/cpack.log")
deb="$work/unroll-dev_${version}_amd64.deb"
[ -f "$deb" ] || { cat "$work/cpack.log"; fail "no $deb"; }
info=$(dpkg-deb --info "$deb")
grep -q "^ *Package: unroll-dev$" <<< "$info" || fail "the package is not named unroll-dev"
dpkg -x "$deb" "$work/root"
for f in include/unroll/nn/nn.h include/unroll/autodiff/autodiff.h include/unroll/version.h; do
  [ -f "$work/root/usr/$f" ] || fail "the package has no /usr/$f"
done
for f in libunroll_nn.a libunroll_autodiff.a "libunroll_nn.so.${version%.*}" cmake/unroll/unrollConfig.cmake \
         cmake/unroll/unroll-static-targets.cmake cmake/unroll/unroll-shared-targets.cmake pkgconfig/unroll.pc; do
  [ -n "$(find "$work/root/usr/lib" -path "*/$f")" ] || fail "the package has no $f"
done
[ -f "$work/root/usr/share/doc/unroll/README.md" ] || fail "the package has no docs"
[ -x "$work/root/usr/bin/unroll-ckpt" ] || fail "the package has no unroll-ckpt"
LD_LIBRARY_PATH=$(dirname "$(find "$work/root/usr/lib" -name 'libunroll_nn.so.*' | head -n 1)") \
  "$work/root/usr/bin/unroll-ckpt" --version | grep -q "^unroll-ckpt $version$" || fail "the package's unroll-ckpt does not run"
cmake -S "$here" -B "$work/c5" -DCMAKE_PREFIX_PATH="$work/root/usr" > /dev/null
cmake --build "$work/c5" > /dev/null
links "$work/c5/app" "libunroll_nn.so.${version%.*} => $work/root/usr" ||
  fail "deb route: app does not link the package's libunroll_nn.so"
run_app "$work/c5/app"
cmake -S "$here" -B "$work/c5s" -DCMAKE_PREFIX_PATH="$work/root/usr" -Dunroll_SHARED_LIBS=OFF > /dev/null
cmake --build "$work/c5s" > /dev/null
links "$work/c5s/app" libunroll && fail "deb route, unroll_SHARED_LIBS=OFF: app links a shared unroll"
run_app "$work/c5s/app"

printf '\nconsumer: 5 routes passed (find_package static and shared, pkg-config, add_subdirectory, .deb)\n'
