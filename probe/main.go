// kiln-probe looks at the container it runs in from the inside and prints
// what it finds as one JSON object on stdout. It judges nothing: `kiln test`
// compares the report with what the image's definition promises.
//
// It is built by kiln (`CGO_ENABLED=0`, static, amd64 and arm64) and added
// as an extra layer to a test copy of an image only, never to the image that
// is published. It uses the standard library alone, so that what it reports
// about TLS and time zones is what any static Go program in the image sees.
package main

import (
	"bufio"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type Report struct {
	Arch     string   `json:"arch"`
	UID      int      `json:"uid"`
	GID      int      `json:"gid"`
	EUID     int      `json:"euid"`
	EGID     int      `json:"egid"`
	Groups   []int    `json:"groups"`
	UserName string   `json:"userName"`
	Caps     Caps     `json:"capabilities"`
	RootFS   RootFS   `json:"rootfs"`
	Shell    Shell    `json:"shell"`
	CA       CA       `json:"caBundle"`
	Zone     Zone     `json:"zoneinfo"`
	Network  Network  `json:"network"`
	Problems []string `json:"problems"`
}

// Caps holds the capability sets and related flags from /proc/self/status.
type Caps struct {
	Effective   string `json:"effective"`
	Permitted   string `json:"permitted"`
	Inheritable string `json:"inheritable"`
	Bounding    string `json:"bounding"`
	Ambient     string `json:"ambient"`
	NoNewPrivs  *int   `json:"noNewPrivs"`
	Seccomp     *int   `json:"seccomp"`
}

type RootFS struct {
	// Writable is true when a file could be created in /.
	Writable   bool   `json:"writable"`
	WriteError string `json:"writeError"`
	WriteErrno string `json:"writeErrno"`
	// TmpWritable: /tmp (a tmpfs under podman --read-only) takes a file.
	TmpWritable bool `json:"tmpWritable"`
}

type Shell struct {
	Path      string `json:"path"`
	Present   bool   `json:"present"`
	Ran       bool   `json:"ran"`
	ExecError string `json:"execError"`
	ExecErrno string `json:"execErrno"`
	Output    string `json:"output"`
}

type CA struct {
	Path            string `json:"path"`
	FromEnv         bool   `json:"fromEnv"`
	Present         bool   `json:"present"`
	ReadError       string `json:"readError"`
	Certificates    int    `json:"certificates"`
	ParseErrors     int    `json:"parseErrors"`
	SystemPool      bool   `json:"systemPool"`
	SystemPoolError string `json:"systemPoolError"`
	// ChainsVerified counts bundle certificates for which crypto/x509 built
	// and verified a chain to a root of the system pool.
	ChainsVerified int    `json:"chainsVerified"`
	VerifyError    string `json:"verifyError"`
	Sample         string `json:"sample"`
}

type Zone struct {
	Name     string `json:"name"`
	Resolved bool   `json:"resolved"`
	Error    string `json:"error"`
	// Abbreviations at a winter and a summer instant: EST and EDT for New
	// York, which only real zoneinfo data knows.
	Winter string `json:"winter"`
	Summer string `json:"summer"`
}

type Network struct {
	Interfaces []string `json:"interfaces"`
	// Routes other than through lo, from /proc/net/route and ipv6_route.
	Routes     int    `json:"routes"`
	DialTarget string `json:"dialTarget"`
	// Dialed is true when the kernel found a route for a UDP "connection"
	// (which sends no packet).
	Dialed    bool   `json:"dialed"`
	DialError string `json:"dialError"`
	DialErrno string `json:"dialErrno"`
}

func main() {
	zone := flag.String("zone", "America/New_York", "time zone to resolve")
	shell := flag.String("shell", "/bin/sh", "shell to try to execute")
	flag.Parse()

	r := Report{Arch: runtime.GOARCH, Problems: []string{}}
	r.UID, r.GID, r.EUID, r.EGID = os.Getuid(), os.Getgid(), os.Geteuid(), os.Getegid()
	if gs, err := os.Getgroups(); err == nil {
		r.Groups = gs
	} else {
		r.problem("getgroups: %v", err)
	}
	if r.Groups == nil {
		r.Groups = []int{}
	}
	if u, err := user.LookupId(strconv.Itoa(r.UID)); err == nil {
		r.UserName = u.Username
	}
	r.Caps = readCaps(&r)
	r.RootFS = probeRootFS()
	r.Shell = probeShell(*shell)
	r.CA = probeCA()
	r.Zone = probeZone(*zone)
	r.Network = probeNetwork(&r)

	out, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		fmt.Fprintln(os.Stderr, "kiln-probe:", err)
		os.Exit(2)
	}
	os.Stdout.Write(append(out, '\n'))
}

func (r *Report) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

func readCaps(r *Report) Caps {
	var c Caps
	f, err := os.Open("/proc/self/status")
	if err != nil {
		r.problem("reading /proc/self/status: %v", err)
		return c
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "CapEff":
			c.Effective = v
		case "CapPrm":
			c.Permitted = v
		case "CapInh":
			c.Inheritable = v
		case "CapBnd":
			c.Bounding = v
		case "CapAmb":
			c.Ambient = v
		case "NoNewPrivs":
			if n, err := strconv.Atoi(v); err == nil {
				c.NoNewPrivs = &n
			}
		case "Seccomp":
			if n, err := strconv.Atoi(v); err == nil {
				c.Seccomp = &n
			}
		}
	}
	return c
}

func probeRootFS() RootFS {
	var fs RootFS
	name := fmt.Sprintf("/.kiln-probe-%d", os.Getpid())
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err == nil {
		fs.Writable = true
		f.Close()
		os.Remove(name)
	} else {
		fs.WriteError = err.Error()
		fs.WriteErrno = errnoName(err)
	}
	if f, err := os.CreateTemp("/tmp", "kiln-probe-"); err == nil {
		fs.TmpWritable = true
		f.Close()
		os.Remove(f.Name())
	}
	return fs
}

func probeShell(path string) Shell {
	sh := Shell{Path: path}
	if _, err := os.Lstat(path); err == nil {
		sh.Present = true
	}
	cmd := exec.Command(path, "-c", "id")
	out, err := cmd.CombinedOutput()
	sh.Output = strings.TrimSpace(string(out))
	if err != nil {
		sh.ExecError = err.Error()
		sh.ExecErrno = errnoName(err)
		var exit *exec.ExitError
		// It ran but failed: still a shell that executes.
		sh.Ran = errors.As(err, &exit)
	} else {
		sh.Ran = true
	}
	return sh
}

func probeCA() CA {
	ca := CA{Path: "/etc/ssl/certs/ca-certificates.crt"}
	if p := os.Getenv("SSL_CERT_FILE"); p != "" {
		ca.Path, ca.FromEnv = p, true
	}
	data, err := os.ReadFile(ca.Path)
	if err != nil {
		ca.ReadError = err.Error()
	} else {
		ca.Present = true
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			ca.ParseErrors++
			continue
		}
		certs = append(certs, c)
	}
	ca.Certificates = len(certs)
	pool, err := x509.SystemCertPool()
	if err != nil {
		ca.SystemPoolError = err.Error()
		return ca
	}
	ca.SystemPool = true
	for _, c := range certs {
		// In the middle of the certificate's validity, so that the check
		// does not depend on the clock of the machine running the test.
		at := c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
		chains, err := c.Verify(x509.VerifyOptions{
			Roots:       pool,
			CurrentTime: at,
			KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			if ca.VerifyError == "" {
				ca.VerifyError = fmt.Sprintf("%s: %v", c.Subject.CommonName, err)
			}
			continue
		}
		if len(chains) > 0 {
			ca.ChainsVerified++
			if ca.Sample == "" {
				ca.Sample = c.Subject.String()
			}
		}
	}
	return ca
}

func probeZone(name string) Zone {
	z := Zone{Name: name}
	loc, err := time.LoadLocation(name)
	if err != nil {
		z.Error = err.Error()
		return z
	}
	z.Resolved = true
	z.Winter, _ = time.Date(2024, 1, 15, 12, 0, 0, 0, time.UTC).In(loc).Zone()
	z.Summer, _ = time.Date(2024, 7, 15, 12, 0, 0, 0, time.UTC).In(loc).Zone()
	return z
}

func probeNetwork(r *Report) Network {
	n := Network{Interfaces: []string{}}
	ifs, err := net.Interfaces()
	if err != nil {
		r.problem("listing interfaces: %v", err)
	}
	for _, i := range ifs {
		n.Interfaces = append(n.Interfaces, i.Name)
	}
	n.Routes = countRoutes("/proc/net/route", 0) + countRoutes("/proc/net/ipv6_route", 9)
	// TEST-NET-1 (RFC 5737) is never routed on the internet, and connect()
	// on a UDP socket only asks the kernel for a route: no packet leaves
	// even where a network exists.
	n.DialTarget = "192.0.2.1:9"
	c, err := net.Dial("udp4", n.DialTarget)
	if err == nil {
		n.Dialed = true
		c.Close()
	} else {
		n.DialError = err.Error()
		n.DialErrno = errnoName(err)
	}
	return n
}

// countRoutes counts routing table lines whose interface (column col) is
// not lo.
func countRoutes(path string, col int) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	count := 0
	for i, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if col == 0 && i == 0 {
			continue // header of /proc/net/route
		}
		if len(fields) > col && fields[col] != "lo" {
			count++
		}
	}
	return count
}

var errnoNames = map[syscall.Errno]string{
	syscall.EROFS:         "EROFS",
	syscall.ENOENT:        "ENOENT",
	syscall.EACCES:        "EACCES",
	syscall.EPERM:         "EPERM",
	syscall.ENOEXEC:       "ENOEXEC",
	syscall.ENETUNREACH:   "ENETUNREACH",
	syscall.EHOSTUNREACH:  "EHOSTUNREACH",
	syscall.ECONNREFUSED:  "ECONNREFUSED",
	syscall.EADDRNOTAVAIL: "EADDRNOTAVAIL",
	syscall.ENOTDIR:       "ENOTDIR",
}

func errnoName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if n, ok := errnoNames[errno]; ok {
			return n
		}
		return fmt.Sprintf("errno %d", int(errno))
	}
	return ""
}
