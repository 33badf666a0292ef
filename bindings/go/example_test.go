package carbonlite_test

import (
	"fmt"
	"log"
	"os"
	"time"

	"carbonlite"
)

func Example() {
	dir, _ := os.MkdirTemp("", "carbonlite-example")
	defer os.RemoveAll(dir)
	c, err := carbonlite.Open(dir, "[whisper]\nworkers = 2\n") // options: "" or go-carbon.conf TOML
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close() // writes the cache out, stops the threads
	now := time.Now().Unix()
	c.Add("app.requests", 42, now-60) // carbonlite.Now = the current time
	c.AddString(fmt.Sprintf("app.errors 3 %d\napp.latency 0.25 %d\n", now, now))
	c.Flush()                                       // every point is in its .wsp file
	s, err := c.Fetch("app.requests", now-300, now) // until 0 also means now; NaN marks a gap
	fmt.Println(len(s.Values), s.Step, s.Values[3], err)
	// Output: 5 60 42 <nil>
}
