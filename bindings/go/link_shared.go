//go:build carbonlite_shared

package carbonlite

// With `-tags carbonlite_shared`, link target/release/libcarbonlite.so instead (rpath set to
// that folder), e.g. to share one copy of the library with C code in the same process.

/*
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -Wl,-rpath,${SRCDIR}/../../target/release -lcarbonlite
*/
import "C"

const linkedStatically = false
