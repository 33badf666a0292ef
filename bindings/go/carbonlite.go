// Package carbonlite embeds a Graphite carbon (cache + persister threads writing whisper
// files) in a Go program through libcarbonlite's C ABI (include/carbonlite.h).
//
// Files written are Graphite whisper files: Graphite's whisper.fetch on them returns what
// Fetch returns after a Flush. A *Carbon may be used from any number of goroutines.
//
// Errors are *Error values carrying the library's code and text; compare with errors.Is
// against ErrNotFound, ErrClosed, ErrFull, ....
package carbonlite

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#include <stdlib.h>
#include "carbonlite.h"
*/
import "C"

import (
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

// Now as a timestamp means "the current time" (the C API's -1).
const Now int64 = -1

// Code is a carbon_error value: 0 or negative, stable across versions.
type Code int

// The carbon_error codes of include/carbonlite.h.
const (
	CodeOK       Code = C.CARBON_OK
	CodeInvalid  Code = C.CARBON_EINVAL
	CodeNotFound Code = C.CARBON_ENOTFOUND
	CodeIO       Code = C.CARBON_EIO
	CodeFull     Code = C.CARBON_EFULL
	CodeCorrupt  Code = C.CARBON_ECORRUPT
	CodeConfig   Code = C.CARBON_ECONFIG
	CodeExist    Code = C.CARBON_EEXIST
	CodeRange    Code = C.CARBON_ERANGE
	CodeClosed   Code = C.CARBON_ECLOSED
	CodeNoSpace  Code = C.CARBON_ENOSPC
	CodeParse    Code = C.CARBON_EPARSE
	CodeName     Code = C.CARBON_ENAME
	CodePanic    Code = C.CARBON_EPANIC
	// CodeUnknown marks a failure the C API reports without a code (carbon_open's NULL).
	CodeUnknown Code = 1
)

// String is the library's static text for the code (carbon_strerror).
func (c Code) String() string {
	if c == CodeUnknown {
		return "error"
	}
	return C.GoString(C.carbon_strerror(C.int(c)))
}

// Error is a failure reported by libcarbonlite.
type Error struct {
	Code Code   // carbon_error value
	Op   string // the call that failed, e.g. `fetch "a.b"`
	Msg  string // carbon_last_error() text for this failure
}

func (e *Error) Error() string {
	msg := e.Msg
	if msg == "" {
		msg = e.Code.String()
	}
	if e.Op == "" {
		return "carbonlite: " + msg
	}
	return "carbonlite: " + e.Op + ": " + msg
}

// Is makes errors.Is(err, ErrNotFound) (etc.) match on the code alone.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinels for errors.Is, one per code.
var (
	ErrInvalid  = &Error{Code: CodeInvalid}
	ErrNotFound = &Error{Code: CodeNotFound}
	ErrIO       = &Error{Code: CodeIO}
	ErrFull     = &Error{Code: CodeFull}
	ErrCorrupt  = &Error{Code: CodeCorrupt}
	ErrConfig   = &Error{Code: CodeConfig}
	ErrExist    = &Error{Code: CodeExist}
	ErrRange    = &Error{Code: CodeRange}
	ErrClosed   = &Error{Code: CodeClosed}
	ErrNoSpace  = &Error{Code: CodeNoSpace}
	ErrParse    = &Error{Code: CodeParse}
	ErrName     = &Error{Code: CodeName}
	ErrPanic    = &Error{Code: CodePanic}
)

// lastError builds the error for a failed call. It must run on the OS thread that made the
// call (the caller holds runtime.LockOSThread): carbon_last_error is thread-local, and a
// goroutine may otherwise move to another thread between the call and this read.
func lastError(op string, code Code) error {
	return &Error{Code: code, Op: op, Msg: C.GoString(C.carbon_last_error())}
}

// Version is the linked libcarbonlite's version.
func Version() string { return C.GoString(C.carbon_version()) }

// Carbon is an embedded carbon node. Create it with Open; Close it to write the cache out.
type Carbon struct {
	// mu guards ptr: calls hold it shared, Close exclusively, so the C handle is never
	// freed while a call uses it.
	mu  sync.RWMutex
	ptr *C.carbon
}

// cString copies s into C memory (freed by the caller). A NUL inside s would silently
// shorten it on the C side, so it is refused.
func cString(op, what, s string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, &Error{Code: CodeInvalid, Op: op, Msg: what + " contains a NUL byte"}
	}
	return C.CString(s), nil
}

// Open starts a carbon storing whisper files under dataDir. options is "" or go-carbon.conf
// TOML text ("[whisper]\nworkers = 4\n", "[cache]\nmax-size = 100000\n", ...).
func Open(dataDir, options string) (*Carbon, error) {
	cdir, err := cString("open", "data dir", dataDir)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cdir))
	var copts *C.char
	if options != "" {
		if copts, err = cString("open", "options", options); err != nil {
			return nil, err
		}
		defer C.free(unsafe.Pointer(copts))
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p := C.carbon_open(cdir, copts)
	if p == nil {
		return nil, lastError("open "+dataDir, CodeUnknown)
	}
	return wrap(p), nil
}

// OpenConfig starts a carbon from a go-carbon.conf file (its [whisper] data-dir is used).
func OpenConfig(path string) (*Carbon, error) {
	cpath, err := cString("open", "path", path)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cpath))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p := C.carbon_open_config(cpath)
	if p == nil {
		return nil, lastError("open config "+path, CodeUnknown)
	}
	return wrap(p), nil
}

func wrap(p *C.carbon) *Carbon {
	c := &Carbon{ptr: p}
	// A Carbon dropped without Close still writes its cache out and stops its threads.
	runtime.SetFinalizer(c, (*Carbon).Close)
	return c
}

// Close stops the threads after writing every cached point to its file. Safe to call more
// than once and from several goroutines; calls made after it fail with ErrClosed.
func (c *Carbon) Close() error {
	c.mu.Lock()
	p := c.ptr
	c.ptr = nil
	c.mu.Unlock()
	if p != nil {
		runtime.SetFinalizer(c, nil)
		C.carbon_close(p)
	}
	return nil
}

// call runs f with the live handle, on a locked OS thread, and turns a negative return
// code into an *Error read on that same thread.
func (c *Carbon) call(op string, f func(p *C.carbon) C.int) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return &Error{Code: CodeClosed, Op: op, Msg: "the Carbon is closed"}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rc := f(c.ptr)
	runtime.KeepAlive(c)
	if rc < 0 {
		return lastError(op, Code(rc))
	}
	return nil
}

// Add stores one point; ts is Unix seconds, or Now.
func (c *Carbon) Add(name string, value float64, ts int64) error {
	op := "add " + name
	cname, err := cString(op, "name", name)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cname))
	return c.call(op, func(p *C.carbon) C.int {
		return C.carbon_add(p, cname, C.double(value), C.int64_t(ts))
	})
}

// AddResult counts what AddLines did with a buffer.
type AddResult struct {
	Accepted    uint64 // points now in the cache
	Rejected    uint64 // lines refused (malformed, bad name, or cache full)
	RefusedFull uint64 // of the rejected, how many a full cache refused
}

// AddLines adds plaintext protocol lines ("name value timestamp\n" ...). Malformed lines are
// skipped and counted (Stats().ParseErrors), as carbon does. When a full cache refused some
// points the counts are returned with an ErrFull error. buf is only read during the call.
func (c *Carbon) AddLines(buf []byte) (AddResult, error) {
	var out C.carbon_add_result
	var ptr *C.char
	if len(buf) > 0 {
		// C reads the bytes during the call only and keeps no pointer: passing Go memory
		// without Go pointers in it is allowed by the cgo rules, and saves a copy.
		ptr = (*C.char)(unsafe.Pointer(&buf[0]))
	}
	var rc C.int
	err := c.call("add lines", func(p *C.carbon) C.int {
		rc = C.carbon_add_line_ex(p, ptr, C.size_t(len(buf)), &out)
		return rc
	})
	runtime.KeepAlive(buf)
	if err != nil && Code(rc) != CodeFull {
		return AddResult{}, err
	}
	return AddResult{uint64(out.accepted), uint64(out.rejected), uint64(out.refused_full)}, err
}

// AddLine is AddLines returning only the number of points accepted (carbon_add_line).
func (c *Carbon) AddLine(buf []byte) (int64, error) {
	r, err := c.AddLines(buf)
	return int64(r.Accepted), err
}

// AddString is AddLine for a string.
func (c *Carbon) AddString(lines string) (int64, error) {
	return c.AddLine([]byte(lines))
}

// Flush returns once every point accepted before the call is in its whisper file.
func (c *Carbon) Flush() error {
	return c.call("flush", func(p *C.carbon) C.int { return C.carbon_flush(p) })
}

// Series is a fetched window: Values[i] is at From + i*Step; Until is exclusive; NaN marks
// a gap. A window entirely outside the retention has no Values (whisper.fetch's None).
type Series struct {
	From, Until, Step int64
	Values            []float64
}

// Fetch is whisper.fetch(from, until) on name's file with cached points laid over it;
// until 0 means now. An unknown metric gives ErrNotFound; from > until gives ErrRange.
func (c *Carbon) Fetch(name string, from, until int64) (Series, error) {
	op := "fetch " + name
	if until < 0 {
		return Series{}, &Error{Code: CodeInvalid, Op: op, Msg: "until must be positive, or 0 for now"}
	}
	cname, err := cString(op, "name", name)
	if err != nil {
		return Series{}, err
	}
	defer C.free(unsafe.Pointer(cname))
	// The series lives in C memory (no Go pointer is handed to C to keep).
	s := (*C.whisper_series)(C.calloc(1, C.size_t(unsafe.Sizeof(C.whisper_series{}))))
	defer C.free(unsafe.Pointer(s))
	err = c.call(op, func(p *C.carbon) C.int {
		return C.whisper_fetch(p, cname, C.int64_t(from), C.int64_t(until), s)
	})
	if err != nil {
		return Series{}, err
	}
	defer C.whisper_series_free(s)
	out := Series{From: int64(s.from), Until: int64(s.until), Step: int64(s.step)}
	if s.len > 0 {
		out.Values = make([]float64, int(s.len))
		copy(out.Values, unsafe.Slice((*float64)(unsafe.Pointer(s.values)), int(s.len)))
	}
	return out, nil
}

// Stats are counters since Open and current cache gauges (go-carbon's self-metric names).
type Stats struct {
	MetricsReceived    uint64
	ParseErrors        uint64
	NameErrors         uint64
	Overflow           uint64
	UpdateOperations   uint64
	CommittedPoints    uint64
	Created            uint64
	ThrottledCreates   uint64
	WriteErrors        uint64
	DiskFullErrors     uint64
	CorruptFiles       uint64
	CacheQueries       uint64
	TCPMetricsReceived uint64
	TCPErrors          uint64
	TCPActive          uint64
	CacheSize          uint64
	CacheMetrics       uint64
	CacheMaxSize       uint64
	NotConfirmed       uint64
	Workers            uint64
	// Listeners beside TCP ([udp], [pickle]).
	UDPMetricsReceived    uint64
	UDPErrors             uint64
	PickleMetricsReceived uint64
	PickleErrors          uint64
	PickleActive          uint64
	// The write-ahead journal ([journal]): size now, and counters since Open.
	JournalBytes         uint64
	JournalSegments      uint64
	JournalAppends       uint64
	JournalAppendedBytes uint64
	JournalFsyncs        uint64
	JournalReplayed      uint64
	JournalErrors        uint64
	JournalRefused       uint64
	JournalReleased      uint64
	// Corrupt files moved to <data-dir>/.corrupt/ ([whisper] quarantine-corrupt).
	Quarantined uint64
	// go-carbon's [dump]: points written on Close, points restored on Open, damaged files.
	DumpPoints     uint64
	RestoredPoints uint64
	DumpErrors     uint64
}

// FindMatch is one node a Graphite glob matched: a leaf is a metric, else a branch.
type FindMatch struct {
	Path   string
	IsLeaf bool
}

// Find expands a Graphite glob (`*`, `?`, `[a-z]`, `{a,b}`) over the metric tree on disk and
// the metrics only in the cache, as carbonserver's /metrics/find/ does; sorted by path.
func (c *Carbon) Find(pattern string) ([]FindMatch, error) {
	op := "find " + pattern
	cpat, err := cString(op, "pattern", pattern)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cpat))
	// The list lives in C memory; C keeps no Go pointer.
	list := (*C.carbon_find_list)(C.calloc(1, C.size_t(unsafe.Sizeof(C.carbon_find_list{}))))
	defer C.free(unsafe.Pointer(list))
	err = c.call(op, func(p *C.carbon) C.int {
		if n := C.carbon_find(p, cpat, list); n < 0 {
			return C.int(n)
		}
		return 0
	})
	if err != nil {
		return nil, err
	}
	defer C.carbon_find_list_free(list)
	out := make([]FindMatch, 0, int(list.len))
	if list.len > 0 {
		for _, m := range unsafe.Slice(list.matches, int(list.len)) {
			out = append(out, FindMatch{Path: C.GoString(m.path), IsLeaf: bool(m.is_leaf)})
		}
	}
	return out, nil
}

// Stats copies the counters.
func (c *Carbon) Stats() (Stats, error) {
	var s C.carbon_counters
	// Sized: a newer shared library than the header this was built with writes no more
	// than this struct holds (fields an older library lacks stay zero).
	err := c.call("stats", func(p *C.carbon) C.int {
		return C.carbon_stats_sized(p, &s, C.size_t(unsafe.Sizeof(s)))
	})
	if err != nil {
		return Stats{}, err
	}
	return Stats{
		MetricsReceived:    uint64(s.metrics_received),
		ParseErrors:        uint64(s.parse_errors),
		NameErrors:         uint64(s.name_errors),
		Overflow:           uint64(s.overflow),
		UpdateOperations:   uint64(s.update_operations),
		CommittedPoints:    uint64(s.committed_points),
		Created:            uint64(s.created),
		ThrottledCreates:   uint64(s.throttled_creates),
		WriteErrors:        uint64(s.write_errors),
		DiskFullErrors:     uint64(s.disk_full_errors),
		CorruptFiles:       uint64(s.corrupt_files),
		CacheQueries:       uint64(s.cache_queries),
		TCPMetricsReceived: uint64(s.tcp_metrics_received),
		TCPErrors:          uint64(s.tcp_errors),
		TCPActive:          uint64(s.tcp_active),
		CacheSize:          uint64(s.cache_size),
		CacheMetrics:       uint64(s.cache_metrics),
		CacheMaxSize:       uint64(s.cache_max_size),
		NotConfirmed:       uint64(s.not_confirmed),
		Workers:            uint64(s.workers),

		UDPMetricsReceived:    uint64(s.udp_metrics_received),
		UDPErrors:             uint64(s.udp_errors),
		PickleMetricsReceived: uint64(s.pickle_metrics_received),
		PickleErrors:          uint64(s.pickle_errors),
		PickleActive:          uint64(s.pickle_active),
		JournalBytes:          uint64(s.journal_bytes),
		JournalSegments:       uint64(s.journal_segments),
		JournalAppends:        uint64(s.journal_appends),
		JournalAppendedBytes:  uint64(s.journal_appended_bytes),
		JournalFsyncs:         uint64(s.journal_fsyncs),
		JournalReplayed:       uint64(s.journal_replayed),
		JournalErrors:         uint64(s.journal_errors),
		JournalRefused:        uint64(s.journal_refused),
		JournalReleased:       uint64(s.journal_released),
		Quarantined:           uint64(s.quarantined),
		DumpPoints:            uint64(s.dump_points),
		RestoredPoints:        uint64(s.restored_points),
		DumpErrors:            uint64(s.dump_errors),
	}, nil
}

// DestinationStats are the counters of one [cluster] destination (carbon-relay's
// destinations.<d>.* names); Local marks this process's own entry, whose share is stored here.
type DestinationStats struct {
	Destination     string
	Local           bool
	Sent            uint64
	Queued          uint64
	Dropped         uint64
	Reconnects      uint64
	ConnectFailures uint64
	Spilled         uint64
	QueryErrors     uint64
	Stalls          uint64
}

// DestinationStats copies the counters of every [cluster] destination, in configuration order
// (empty for a handle opened without [cluster]).
func (c *Carbon) DestinationStats() ([]DestinationStats, error) {
	var n C.int
	err := c.call("destination stats", func(p *C.carbon) C.int {
		n = C.carbon_destination_count(p)
		return n
	})
	if err != nil {
		return nil, err
	}
	out := make([]DestinationStats, 0, int(n))
	for i := 0; i < int(n); i++ {
		var d C.carbon_destination_counters
		err := c.call("destination stats", func(p *C.carbon) C.int {
			return C.carbon_destination_stats_sized(p, C.size_t(i), &d, C.size_t(unsafe.Sizeof(d)))
		})
		if err != nil {
			return nil, err
		}
		out = append(out, DestinationStats{
			Destination:     C.GoString(&d.destination[0]),
			Local:           bool(d.local),
			Sent:            uint64(d.sent),
			Queued:          uint64(d.queued),
			Dropped:         uint64(d.dropped),
			Reconnects:      uint64(d.reconnects),
			ConnectFailures: uint64(d.connect_failures),
			Spilled:         uint64(d.spilled),
			QueryErrors:     uint64(d.query_errors),
			Stalls:          uint64(d.stalls),
		})
	}
	return out, nil
}
