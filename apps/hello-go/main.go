// hello-go answers HTTP requests with a greeting: the smallest service a
// team puts on scratch-plus. `hello-go -check` starts the server on a
// loopback port, asks it, and exits 0 only if it answered, so that a
// container without a network can still prove the binary works.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/google/uuid"
)

func handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// A vendored module, so that the template shows how dependencies
		// enter a sandboxed build (vendor/, checked against go.sum).
		w.Header().Set("X-Request-Id", uuid.NewString())
		fmt.Fprintf(w, "hello from kiln (%s/%s, uid %d)\n", runtime.GOOS, runtime.GOARCH, os.Getuid())
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	return mux
}

func selfCheck() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	client := &http.Client{Timeout: 5 * time.Second}
	for _, path := range []string{"/healthz", "/"} {
		resp, err := client.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: status %d", path, resp.StatusCode)
		}
		if id := resp.Header.Get("X-Request-Id"); id != "" {
			if _, err := uuid.Parse(id); err != nil {
				return fmt.Errorf("%s: X-Request-Id %q: %v", path, id, err)
			}
			fmt.Printf("%s: request %s\n", path, id)
		}
		fmt.Printf("%s: %s", path, body)
	}
	return nil
}

func main() {
	check := flag.Bool("check", false, "serve on a loopback port, request it, and exit")
	flag.Parse()
	if *check {
		if err := selfCheck(); err != nil {
			log.Fatalf("self-check failed: %v", err)
		}
		return
	}
	addr := ":" + envOr("PORT", "8080")
	srv := &http.Server{Addr: addr, Handler: handler(), ReadHeaderTimeout: 5 * time.Second}
	log.Printf("listening on %s", addr)
	log.Fatal(srv.ListenAndServe())
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}
