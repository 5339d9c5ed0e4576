# Build, install and C-test the mecom library (the package `mecom` only; the
# `mecom` tool in cli/ is built by cargo, docs/CLI.md).
#
#   make                      build target/release/libmecom.a
#   make install PREFIX=DIR   install libmecom.a, mecom.h and mecom.pc under DIR
#   make c-test               C smoke test under ASan/UBSan
#   make valgrind-test        the same C test, without sanitizers, under valgrind
#
# mecom ships a static library only; consumers link with
# `pkg-config --static --libs mecom` (meson: dependency('mecom', static: true)),
# which adds libzstd and the Rust runtime's system libraries.

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
CARGO ?= cargo
CC ?= cc
TARGET_DIR ?= $(CURDIR)/target
LIB := $(TARGET_DIR)/release/libmecom.a
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
# What `cargo rustc -- --print native-static-libs` reports for this crate on
# Linux/glibc; tests/c checks the link works with exactly these.
NATIVE_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
# The .pc leaves out -lgcc_s: every gcc/clang link of a C program adds it
# already, and meson's static lookup of it only produces a warning.
PC_LIBS_PRIVATE := $(filter-out -lgcc_s,$(NATIVE_LIBS))
ZSTD_LIBS := $(shell pkg-config --libs libzstd)
C_TEST_FLAGS := -std=c11 -Wall -Wextra -Werror -g -Iinclude

.PHONY: all lib install uninstall c-test valgrind-test clean
all: lib

lib:
	CARGO_TARGET_DIR=$(TARGET_DIR) $(CARGO) build --release -p mecom --lib

$(TARGET_DIR)/mecom.pc: mecom.pc.in Cargo.toml lib
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@NATIVE_LIBS@|$(PC_LIBS_PRIVATE)|' $< > $(TARGET_DIR)/mecom.pc

install: lib $(TARGET_DIR)/mecom.pc
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)
	install -m 644 $(LIB) $(DESTDIR)$(LIBDIR)/libmecom.a
	install -m 644 include/mecom.h $(DESTDIR)$(INCLUDEDIR)/mecom.h
	install -m 644 $(TARGET_DIR)/mecom.pc $(DESTDIR)$(LIBDIR)/pkgconfig/mecom.pc

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libmecom.a $(DESTDIR)$(INCLUDEDIR)/mecom.h \
	      $(DESTDIR)$(LIBDIR)/pkgconfig/mecom.pc

$(TARGET_DIR)/c-smoke-asan: tests/c/smoke.c include/mecom.h lib
	$(CC) $(C_TEST_FLAGS) -fsanitize=address,undefined -fno-sanitize-recover=all \
	    -o $@ $< $(LIB) $(ZSTD_LIBS) $(NATIVE_LIBS)

$(TARGET_DIR)/c-smoke: tests/c/smoke.c include/mecom.h lib
	$(CC) $(C_TEST_FLAGS) -O1 -o $@ $< $(LIB) $(ZSTD_LIBS) $(NATIVE_LIBS)

c-test: $(TARGET_DIR)/c-smoke-asan
	nm $< | grep -q __asan_init   # the sanitizer really is linked in
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $<

valgrind-test: $(TARGET_DIR)/c-smoke
	valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite $<

clean:
	CARGO_TARGET_DIR=$(TARGET_DIR) $(CARGO) clean
