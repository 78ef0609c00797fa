// fake-kubelet is a loopback-only test fixture that stands in for a kubelet behind a real
// kube-apiserver, so the end-to-end ring can drive `kubectl logs/exec/attach/port-forward`
// (through the proxy) without a container runtime.
//
// kube-apiserver finds "the kubelet" of a pod from its Node object only (InternalIP 127.0.0.1
// and status.daemonEndpoints.kubeletEndpoint.Port = this server's port) and then calls the
// kubelet API paths served here:
//
//	GET      /containerLogs/{ns}/{pod}/{container}    deterministic lines, optional follow
//	GET/POST /exec/{ns}/{pod}[/{uid}]/{container}     runs the command on the host (os/exec)
//	GET/POST /attach/{ns}/{pod}[/{uid}]/{container}   an echo "process": stdin -> stdout
//	GET/POST /portForward/{ns}/{pod}[/{uid}]          port P -> 127.0.0.1:P on the host
//	GET      /healthz                                 200 ok
//
// The stream protocols are not reimplemented: exec/attach/portForward are handed to the
// kubelet's own streaming server code (k8s.io/kubelet/pkg/cri/streaming/{remotecommand,
// portforward}), the same functions the real kubelet's CRI streaming server calls, so the
// SPDY (and WebSocket, should an apiserver ever forward it) wire format is the real one.
//
// Running arbitrary commands for whoever connects is only acceptable on loopback, so the
// server refuses to listen anywhere else.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:10250", "loopback address:port to serve the kubelet API on")
	certFile := flag.String("tls-cert-file", "", "serving certificate (PEM); kube-apiserver only talks HTTPS to kubelets")
	keyFile := flag.String("tls-private-key-file", "", "private key of --tls-cert-file (PEM)")
	clientCA := flag.String("client-ca-file", "", "if set, require a client certificate signed by this CA (kube-apiserver's --kubelet-client-certificate)")
	workDir := flag.String("work-dir", "", "directory under which each fake container gets its working directory (default: a fresh temp dir, removed on exit)")
	followInterval := flag.Duration("log-follow-interval", time.Second, "interval between extra log lines when following")
	flag.Parse()

	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("fake-kubelet: ")

	if *certFile == "" || *keyFile == "" {
		log.Fatal("--tls-cert-file and --tls-private-key-file are required (kube-apiserver dials kubelets over HTTPS)")
	}
	if err := requireLoopback(*listen); err != nil {
		log.Fatal(err)
	}

	root := *workDir
	removeRoot := false
	if root == "" {
		d, err := os.MkdirTemp("", "fake-kubelet-")
		if err != nil {
			log.Fatal(err)
		}
		root, removeRoot = d, true
	}

	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if *clientCA != "" {
		pem, err := os.ReadFile(*clientCA)
		if err != nil {
			log.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			log.Fatalf("no certificates in %s", *clientCA)
		}
		tlsConfig.ClientCAs = pool
		tlsConfig.ClientAuth = tls.RequireAndVerifyClientCert
	}

	rt := newRuntime(root)
	srv := &http.Server{
		Handler:           newMux(rt, *followInterval),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.Default(),
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	// The harness waits for this line (or /healthz) before creating the Node object.
	log.Printf("serving kubelet API on https://%s (work dir %s, client certs %s)", ln.Addr(), root, map[bool]string{true: "required", false: "not required"}[*clientCA != ""])

	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, *certFile, *keyFile) }()

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	exitCode := 0
	select {
	case s := <-sigc:
		log.Printf("received %v, shutting down", s)
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			log.Printf("server failed: %v", err)
			exitCode = 1
		}
	}
	// Kill what we started first: hijacked (upgraded) connections are not tracked by the
	// server, and a test harness must not be left with stray host processes. Then Close,
	// not Shutdown: a fixture should stop at once, and Shutdown would wait for connections
	// kube-apiserver opened but has not used yet.
	rt.killAll()
	rt.waitExecs(time.Second)
	_ = srv.Close()
	if removeRoot {
		_ = os.RemoveAll(root)
	}
	os.Exit(exitCode)
}

// requireLoopback refuses non-loopback listen addresses: /exec runs host commands for any
// caller that passes TLS, which is only tolerable when nothing off-host can connect.
func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %v", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--listen %q: only loopback addresses are allowed (this fixture executes host commands)", addr)
	}
	return nil
}
