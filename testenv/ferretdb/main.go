// Command ferretdb runs the embedded FerretDB (package embedmongo) as a process of its own, for
// the tests: `make test` builds it without the race detector, so that a test binary built with
// it does not run the whole SQLite engine instrumented (ten times slower, which stretched the
// crash tests' windows until their catalogs stalled), and a test can kill and restart its store
// like any other server. It prints "URI mongodb://…" once it accepts connections and runs until
// SIGINT or SIGTERM.
//
//	ferretdb -dir DIR [-addr 127.0.0.1:0]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tandemdb/tandem/embedmongo"
)

func main() {
	dir := flag.String("dir", "", "the folder of the SQLite files (required)")
	addr := flag.String("addr", "127.0.0.1:0", "the loopback address to listen on")
	flag.Parse()
	if *dir == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: ferretdb -dir DIR [-addr 127.0.0.1:PORT]")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	srv, err := embedmongo.Start(ctx, embedmongo.Options{Dir: *dir, Addr: *addr})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		os.Exit(1)
	}
	fmt.Println("URI", srv.URI())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	srv.Stop()
}
