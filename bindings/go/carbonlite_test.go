package carbonlite

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func open(t testing.TB, options string) (*Carbon, string) {
	t.Helper()
	dir := t.TempDir()
	c, err := Open(dir, options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, dir
}

func TestAddFlushFetch(t *testing.T) {
	c, dir := open(t, "")
	now := time.Now().Unix()
	if err := c.Add("go.a", 1.5, now-120); err != nil {
		t.Fatal(err)
	}
	n, err := c.AddString(fmt.Sprintf("go.a 2.5 %d\ngo.b 7 %d\nnot a line\n", now-60, now))
	if err != nil || n != 2 {
		t.Fatalf("AddString = %d, %v", n, err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go", "a.wsp")); err != nil {
		t.Fatal(err)
	}
	s, err := c.Fetch("go.a", now-300, now) // until 0 (now) could cross a minute: 6 values
	if err != nil {
		t.Fatal(err)
	}
	if s.Step != 60 || len(s.Values) != 5 || s.Until-s.From != 300 {
		t.Fatalf("series %+v", s)
	}
	at := func(ts int64) float64 { return s.Values[(ts-ts%60-s.From)/s.Step] }
	if at(now-120) != 1.5 || at(now-60) != 2.5 || !math.IsNaN(s.Values[0]) {
		t.Fatalf("values %v", s.Values)
	}
	st, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.MetricsReceived != 3 || st.ParseErrors != 1 || st.CommittedPoints != 3 || st.Workers == 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMatchesPythonWhisper(t *testing.T) {
	c, dir := open(t, "")
	now := time.Now().Unix()
	var b strings.Builder
	for i := int64(0); i < 300; i += 2 {
		fmt.Fprintf(&b, "py.m %d.25 %d\n", i, now-60*i)
	}
	if _, err := c.AddString(b.String()); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	from, until := now-7200, now-600
	s, err := c.Fetch("py.m", from, until)
	if err != nil {
		t.Fatal(err)
	}
	script := `import sys, whisper
(f, u, st), vals = whisper.fetch(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
print(f, u, st, " ".join("nan" if v is None else repr(v) for v in vals))`
	out, err := exec.Command("python3", "-c", script, filepath.Join(dir, "py", "m.wsp"),
		fmt.Sprint(from), fmt.Sprint(until)).CombinedOutput()
	if err != nil {
		t.Fatalf("python whisper (pip install whisper==1.1.10) failed: %v\n%s", err, out)
	}
	var parts []string
	parts = append(parts, fmt.Sprint(s.From), fmt.Sprint(s.Until), fmt.Sprint(s.Step))
	for _, v := range s.Values {
		if math.IsNaN(v) {
			parts = append(parts, "nan")
		} else {
			parts = append(parts, fmt.Sprintf("%.2f", v))
		}
	}
	want := strings.Fields(string(out))
	for i := 3; i < len(want); i++ {
		if want[i] != "nan" {
			var f float64
			fmt.Sscan(want[i], &f)
			want[i] = fmt.Sprintf("%.2f", f)
		}
	}
	if strings.Join(parts, " ") != strings.Join(want, " ") {
		t.Fatalf("carbonlite %v\nwhisper    %v", parts, want)
	}
}

func TestErrors(t *testing.T) {
	c, _ := open(t, "")
	now := time.Now().Unix()
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"unknown metric", func() error { _, e := c.Fetch("no.such", now-60, 0); return e }(), ErrNotFound},
		{"NaN", c.Add("a.b", math.NaN(), now), ErrInvalid},
		{"bad name", c.Add("a/../../x", 1, now), ErrName},
		{"NUL in name", c.Add("a\x00b", 1, now), ErrInvalid},
		{"from > until", func() error {
			c.Add("a.win", 1, now)
			_, e := c.Fetch("a.win", now, now-100)
			return e
		}(), ErrRange},
		{"negative until", func() error { _, e := c.Fetch("a.win", now, -5); return e }(), ErrInvalid},
	}
	for _, tc := range cases {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.err, tc.want)
			continue
		}
		var e *Error
		if !errors.As(tc.err, &e) || e.Msg == "" {
			t.Errorf("%s: no message in %#v", tc.name, tc.err)
		}
	}
	if _, err := Open(t.TempDir(), "[whisper]\nno-such-key = 1\n"); err == nil || !strings.Contains(err.Error(), "no-such-key") {
		t.Errorf("bad option: %v", err)
	}
	if _, err := OpenConfig(filepath.Join(t.TempDir(), "missing.conf")); err == nil || !strings.Contains(err.Error(), "missing.conf") {
		t.Errorf("missing config: %v", err)
	}
	if CodeFull.String() != "cache full" || Version() == "" {
		t.Errorf("strerror/version: %q %q", CodeFull, Version())
	}
}

func TestCacheFull(t *testing.T) {
	c, _ := open(t, "[whisper]\nenabled = false\n[cache]\nmax-size = 10\n")
	now := time.Now().Unix()
	var b strings.Builder
	for i := 0; i < 25; i++ {
		fmt.Fprintf(&b, "full.m%d 1 %d\n", i, now)
	}
	r, err := c.AddLines([]byte(b.String()))
	if !errors.Is(err, ErrFull) || r.Accepted != 10 || r.RefusedFull != 15 {
		t.Fatalf("AddLines = %+v, %v", r, err)
	}
}

func TestClosed(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	c.Add("cl.m", 1, Now)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c.Close() // idempotent
	if _, err := os.Stat(filepath.Join(dir, "cl", "m.wsp")); err != nil {
		t.Fatalf("Close did not flush: %v", err)
	}
	_, e1 := c.AddLine([]byte("a 1 1\n"))
	_, e2 := c.Fetch("cl.m", 0, 0)
	_, e3 := c.Stats()
	for i, err := range []error{c.Add("a", 1, Now), e1, e2, e3, c.Flush()} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("call %d after Close: %v", i, err)
		}
	}
}

func TestConcurrentUseAndClose(t *testing.T) {
	c, dir := open(t, "")
	now := time.Now().Unix()
	const writers, points = 6, 200
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < points; i++ {
				ts := now - 60*int64(i)
				var err error
				if i%2 == 0 {
					err = c.Add(fmt.Sprintf("conc.w%d", w), float64(w*1000+i), ts)
				} else {
					_, err = c.AddString(fmt.Sprintf("conc.w%d %d %d\n", w, w*1000+i, ts))
				}
				if err != nil {
					t.Error(err)
					return
				}
				if i%70 == 0 {
					c.Flush()
					c.Stats()
					c.Fetch(fmt.Sprintf("conc.w%d", w), now-3600, 0)
				}
			}
		}(w)
	}
	wg.Wait()
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for w := 0; w < writers; w++ {
		s, err := c.Fetch(fmt.Sprintf("conc.w%d", w), now-86400+60, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < points; i++ {
			ts := now - 60*int64(i)
			if got := s.Values[(ts-ts%60-s.From)/s.Step]; got != float64(w*1000+i) {
				t.Fatalf("w%d point %d: %v", w, i, got)
			}
		}
	}
	// Close while goroutines are still calling: each sees ErrClosed, nothing crashes.
	var closedSeen sync.WaitGroup
	for w := 0; w < 4; w++ {
		closedSeen.Add(1)
		go func(w int) {
			defer closedSeen.Done()
			for {
				err := c.Add(fmt.Sprintf("race.w%d", w), 1, now)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	time.Sleep(50 * time.Millisecond)
	c.Close()
	closedSeen.Wait()
	for w := 0; w < 4; w++ {
		if _, err := os.Stat(filepath.Join(dir, "race", fmt.Sprintf("w%d.wsp", w))); err != nil {
			t.Error(err)
		}
	}
}

func TestFinalizerClosesForgottenCarbon(t *testing.T) {
	dir := t.TempDir()
	func() {
		c, err := Open(dir, "")
		if err != nil {
			t.Fatal(err)
		}
		c.Add("gc.m", 1, Now) // no Close: the finalizer must flush and free
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		runtime.GC()
		if _, err := os.Stat(filepath.Join(dir, "gc", "m.wsp")); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the finalizer never closed the Carbon")
}

func TestEmptyAndOutsideWindow(t *testing.T) {
	c, _ := open(t, "")
	now := time.Now().Unix()
	if n, err := c.AddLine(nil); n != 0 || err != nil {
		t.Fatalf("AddLine(nil) = %d, %v", n, err)
	}
	c.Add("old.m", 1, now)
	c.Flush()
	s, err := c.Fetch("old.m", now-20000*86400, now-10000*86400)
	if err != nil || len(s.Values) != 0 {
		t.Fatalf("outside retention: %d values from %d, %v", len(s.Values), s.From, err)
	}
}

// The default build links libcarbonlite.a: this test binary must not need the .so.
func TestStaticallyLinked(t *testing.T) {
	if !linkedStatically {
		t.Skip("built with -tags carbonlite_shared")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ldd", exe).CombinedOutput()
	if err != nil {
		t.Fatalf("ldd %s: %v\n%s", exe, err, out)
	}
	if strings.Contains(string(out), "carbonlite") {
		t.Fatalf("test binary needs libcarbonlite at run time:\n%s", out)
	}
}

func BenchmarkAddLine(b *testing.B) {
	c, _ := open(b, "[cache]\nmax-size = 0\n")
	now := time.Now().Unix()
	var sb strings.Builder
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&sb, "bench.m%d %d %d\n", i, i, now)
	}
	buf := []byte(sb.String())
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.AddLine(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "points/s")
}

func BenchmarkFetch(b *testing.B) {
	c, _ := open(b, "")
	now := time.Now().Unix()
	var sb strings.Builder
	for i := 0; i < 1440; i++ {
		fmt.Fprintf(&sb, "bench.f %d %d\n", i, now-60*int64(i))
	}
	c.AddString(sb.String())
	c.Flush()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := c.Fetch("bench.f", now-86400+60, 0)
		if err != nil || len(s.Values) < 1000 {
			b.Fatal(err, len(s.Values))
		}
	}
}

func TestFind(t *testing.T) {
	c, _ := open(t, "")
	now := time.Now().Unix()
	if _, err := c.AddString(fmt.Sprintf("web.a.cpu 1 %d\nweb.b.cpu 2 %d\ndb.a.cpu 3 %d\n", now, now, now)); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	// Only in the cache (no file yet) still counts.
	if err := c.Add("web.c.cpu", 4, now); err != nil {
		t.Fatal(err)
	}
	got, err := c.Find("web.*.cpu")
	if err != nil {
		t.Fatal(err)
	}
	want := []FindMatch{{"web.a.cpu", true}, {"web.b.cpu", true}, {"web.c.cpu", true}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Find = %v, want %v", got, want)
	}
	got, err = c.Find("{web,db}")
	if err != nil || fmt.Sprint(got) != fmt.Sprint([]FindMatch{{"db", false}, {"web", false}}) {
		t.Fatalf("Find branches = %v, %v", got, err)
	}
	if _, err := c.Find("a/../b"); err == nil {
		t.Fatal("a path trick must be refused")
	}
}

// Points acknowledged with fsync = "always" come back from the journal when the handle was
// never closed (the process died), and the journal counters say so.
func TestJournalStatsAndReplay(t *testing.T) {
	dir := t.TempDir()
	opts := "[journal]\nenabled = true\nfsync = \"always\"\n[whisper]\nenabled = false\n"
	c, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	if _, err := c.AddString(fmt.Sprintf("j.a 1 %d\nj.b 2 %d\n", now, now)); err != nil {
		t.Fatal(err)
	}
	st, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.JournalAppends == 0 || st.JournalFsyncs == 0 || st.JournalAppendedBytes == 0 {
		t.Fatalf("journal counters after an add: %+v", st)
	}
	// A second handle on the same dir while the first is open would race; copy the journal
	// as a crash would leave it, then drop the first handle without its clean close.
	crashed := t.TempDir()
	if out, err := exec.Command("cp", "-a", dir+"/.", crashed).CombinedOutput(); err != nil {
		t.Fatal(err, string(out))
	}
	c.Close()
	r, err := Open(crashed, "[journal]\nenabled = true\n")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	st, err = r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.JournalReplayed != 2 {
		t.Fatalf("replayed %d points, want 2", st.JournalReplayed)
	}
	s, err := r.Fetch("j.b", now-60, now+1)
	if err != nil {
		t.Fatal(err)
	}
	if v := s.Values[len(s.Values)-1]; v != 2 {
		t.Fatalf("j.b after replay: %v", s.Values)
	}
}

// A routing handle sends what it does not own to its destination, and DestinationStats counts
// it: the lines a plain listener receives equal the destination's Sent.
func TestDestinationStats(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lines := make(chan int, 1)
	go func() {
		n := 0
		defer func() { lines <- n }()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			n++
		}
	}()
	remote := ln.Addr().String()
	opts := fmt.Sprintf("[cluster]\ndestinations = [\"127.0.0.1:1:local\", \"%s:remote\"]\n"+
		"local = \"127.0.0.1:1:local\"\nprotocol = \"plain\"\n", remote)
	c, _ := open(t, opts)
	now := time.Now().Unix()
	var b strings.Builder
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&b, "route.m%d %d %d\n", i, i, now)
	}
	if n, err := c.AddString(b.String()); err != nil || n != 200 {
		t.Fatal(n, err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	ds, err := c.DestinationStats()
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || !ds[0].Local || ds[1].Local || ds[1].Destination != remote+":remote" {
		t.Fatalf("destinations %+v", ds)
	}
	if ds[1].Sent == 0 || ds[1].Sent == 200 || ds[1].Dropped != 0 || ds[1].Queued != 0 {
		t.Fatalf("remote counters %+v (200 points over 2 destinations)", ds[1])
	}
	c.Close()
	if got := <-lines; uint64(got) != ds[1].Sent {
		t.Fatalf("listener received %d lines, destination says sent %d", got, ds[1].Sent)
	}
}
