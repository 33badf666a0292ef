//go:build !carbonlite_shared

package carbonlite

// By default the static library is linked in, so a Go program needs no libcarbonlite.so at
// run time. Build the library first: `cargo build --release` at the repository root.
// The extra libraries are what `rustc --print native-static-libs` lists on Linux.

/*
#cgo LDFLAGS: ${SRCDIR}/../../target/release/libcarbonlite.a -lm -ldl -lpthread -lgcc_s -lc
*/
import "C"

// linkedStatically says which of the two link files was compiled in (see link_test.go).
const linkedStatically = true
