# C and C++ side of carbonlite: the Rust library (through cargo), the programs in examples-c/,
# the C++ wrapper test, `make install` with a pkg-config file.
#
#   make                      library, examples and tests (in target/c)
#   make check                ... and run them
#   make install PREFIX=/opt/carbonlite [DESTDIR=...]
#   make installcheck         install into a temporary PREFIX, build hello against it via pkg-config

PREFIX     ?= /usr/local
# carbonlite.pc records the prefix: make a relative PREFIX=dist absolute.
override PREFIX := $(abspath $(PREFIX))
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
CARGO      ?= cargo
BUILD      ?= target/c
RELEASE    := target/release
VERSION    := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
# What `rustc --print native-static-libs` lists for the staticlib on Linux.
PRIVATE_LIBS := -lm -ldl -lpthread -lgcc_s -lc

CFLAGS   ?= -O2 -g
CXXFLAGS ?= -O2 -g
WARN      := -Wall -Wextra -Werror
STATIC    := $(RELEASE)/libcarbonlite.a $(PRIVATE_LIBS)
SHARED    := -L$(RELEASE) -Wl,-rpath,$(abspath $(RELEASE)) -lcarbonlite

PROGRAMS := $(BUILD)/hello $(BUILD)/hello-shared $(BUILD)/collector $(BUILD)/hello-cpp \
            $(BUILD)/wrapper_test $(BUILD)/wrapper_test-shared

.PHONY: all lib check installcheck install uninstall clean FORCE
all: $(PROGRAMS)

# cargo decides whether anything changed: it runs every time, and make then compares the
# libraries' times, so the programs relink only when cargo relinked the library.
lib: $(RELEASE)/libcarbonlite.a
$(RELEASE)/libcarbonlite.a: FORCE
	$(CARGO) build --release --lib
$(RELEASE)/libcarbonlite.so: $(RELEASE)/libcarbonlite.a ;
FORCE:

$(BUILD):
	mkdir -p $@

$(BUILD)/hello: examples-c/hello.c include/carbonlite.h $(RELEASE)/libcarbonlite.a | $(BUILD)
	$(CC) -std=c11 $(WARN) $(CFLAGS) -Iinclude $< -o $@ $(STATIC)
$(BUILD)/hello-shared: examples-c/hello.c include/carbonlite.h $(RELEASE)/libcarbonlite.so | $(BUILD)
	$(CC) -std=c11 $(WARN) $(CFLAGS) -Iinclude $< -o $@ $(SHARED)
$(BUILD)/collector: examples-c/collector.c include/carbonlite.h $(RELEASE)/libcarbonlite.a | $(BUILD)
	$(CC) -std=c11 $(WARN) $(CFLAGS) -Iinclude $< -o $@ $(STATIC)
$(BUILD)/hello-cpp: examples-c/hello.cpp include/carbonlite.hpp $(RELEASE)/libcarbonlite.a | $(BUILD)
	$(CXX) -std=c++17 $(WARN) $(CXXFLAGS) -Iinclude $< -o $@ $(STATIC)
# Two translation units including carbonlite.hpp: a non-inline definition would not link.
$(BUILD)/wrapper_test: tests/cpp/wrapper_test.cpp tests/cpp/second_tu.cpp include/carbonlite.hpp $(RELEASE)/libcarbonlite.a | $(BUILD)
	$(CXX) -std=c++17 $(WARN) $(CXXFLAGS) -Iinclude tests/cpp/wrapper_test.cpp tests/cpp/second_tu.cpp -o $@ $(STATIC)
$(BUILD)/wrapper_test-shared: tests/cpp/wrapper_test.cpp tests/cpp/second_tu.cpp include/carbonlite.hpp $(RELEASE)/libcarbonlite.so | $(BUILD)
	$(CXX) -std=c++17 $(WARN) $(CXXFLAGS) -Iinclude tests/cpp/wrapper_test.cpp tests/cpp/second_tu.cpp -o $@ $(SHARED)

check: all
	rm -rf $(BUILD)/data
	$(BUILD)/wrapper_test $(BUILD)/data/wrapper
	$(BUILD)/wrapper_test-shared $(BUILD)/data/wrapper-shared
	tests/cpp/run_example.sh '^hello.world = 42 ' $(BUILD)/hello $(BUILD)/data/hello
	tests/cpp/run_example.sh '^hello.world = 42 ' $(BUILD)/hello-shared $(BUILD)/data/hello-shared
	tests/cpp/run_example.sh '^app.requests 42 ' $(BUILD)/hello-cpp $(BUILD)/data/hello-cpp
	@if ldd $(BUILD)/hello | grep -q carbonlite; then echo "static hello needs libcarbonlite.so"; exit 1; fi
	tests/cpp/check_collector.sh $(BUILD)/collector

$(BUILD)/carbonlite.pc: carbonlite.pc.in Cargo.toml | $(BUILD)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' -e 's|@PRIVATE_LIBS@|$(PRIVATE_LIBS)|' $< > $@

# The .pc records PREFIX, so it is rebuilt on every install.
install: lib
	rm -f $(BUILD)/carbonlite.pc
	$(MAKE) --no-print-directory $(BUILD)/carbonlite.pc PREFIX='$(PREFIX)' LIBDIR='$(LIBDIR)' INCLUDEDIR='$(INCLUDEDIR)'
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 include/carbonlite.h include/carbonlite.hpp $(DESTDIR)$(INCLUDEDIR)/
	install -m 755 $(RELEASE)/libcarbonlite.so $(DESTDIR)$(LIBDIR)/
	install -m 644 $(RELEASE)/libcarbonlite.a $(DESTDIR)$(LIBDIR)/
	install -m 644 $(BUILD)/carbonlite.pc $(DESTDIR)$(LIBDIR)/pkgconfig/

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/carbonlite.h $(DESTDIR)$(INCLUDEDIR)/carbonlite.hpp \
	      $(DESTDIR)$(LIBDIR)/libcarbonlite.so $(DESTDIR)$(LIBDIR)/libcarbonlite.a \
	      $(DESTDIR)$(LIBDIR)/pkgconfig/carbonlite.pc

installcheck:
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(MAKE) --no-print-directory install PREFIX="$$tmp/prefix" && \
	tests/cpp/check_installed.sh "$$tmp/prefix"

clean:
	rm -rf $(BUILD)
