package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	remotecommandconsts "k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/kubelet/pkg/cri/streaming/portforward"
	remotecommandserver "k8s.io/kubelet/pkg/cri/streaming/remotecommand"
)

// Same values the kubelet's CRI streaming server uses by default (streaming.DefaultConfig),
// so timeouts behave like a real node's.
const (
	streamIdleTimeout     = 4 * time.Hour
	streamCreationTimeout = remotecommandconsts.DefaultStreamCreationTimeout
)

// initialLogLines is how many lines every container "has logged" before anyone asks.
const initialLogLines = 3

type handlers struct {
	rt             *runtime
	followInterval time.Duration
}

func newMux(rt *runtime, followInterval time.Duration) http.Handler {
	h := &handlers{rt: rt, followInterval: followInterval}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", h.containerLogs)
	// The kubelet registers exec/attach/portForward for GET and POST, with and without a pod
	// UID segment; kube-apiserver uses the forms without UID, the others are for completeness.
	for _, m := range []string{"GET", "POST"} {
		mux.HandleFunc(m+" /exec/{ns}/{pod}/{container}", h.exec)
		mux.HandleFunc(m+" /exec/{ns}/{pod}/{uid}/{container}", h.exec)
		mux.HandleFunc(m+" /attach/{ns}/{pod}/{container}", h.attach)
		mux.HandleFunc(m+" /attach/{ns}/{pod}/{uid}/{container}", h.attach)
		mux.HandleFunc(m+" /portForward/{ns}/{pod}", h.portForward)
		mux.HandleFunc(m+" /portForward/{ns}/{pod}/{uid}", h.portForward)
	}
	return logRequests(mux)
}

// logRequests prints one line per request so a failing e2e test can see what the apiserver
// actually asked the "kubelet" for (paths and query carry no secrets).
func logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		who := "-"
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			who = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		next.ServeHTTP(w, r)
		logf("%s %s (client cert %q, upgrade %q) done in %v", r.Method, r.URL.RequestURI(), who, r.Header.Get("Upgrade"), time.Since(start).Round(time.Millisecond))
	})
}

// pathIDs returns the namespace/pod/container path values after checking they are single,
// harmless path segments: they become directory names under the work dir, and the mux
// unescapes wildcards, so "%2F.." must not get through.
func pathIDs(r *http.Request, names ...string) ([]string, error) {
	out := make([]string, len(names))
	for i, n := range names {
		v := r.PathValue(n)
		if v == "" || v == "." || v == ".." || strings.ContainsAny(v, "/\\\x00") {
			return nil, fmt.Errorf("invalid %s %q", n, v)
		}
		out[i] = v
	}
	return out, nil
}

// containerLogs mimics the kubelet's /containerLogs endpoint with deterministic content:
// initialLogLines lines, then (follow=true) one more line per followInterval, flushed each
// time, until the client (kube-apiserver) goes away. tailLines, timestamps, limitBytes and
// previous are honoured; sinceSeconds/sinceTime are accepted and ignored (every line is
// "recent").
func (h *handlers) containerLogs(w http.ResponseWriter, r *http.Request) {
	ids, err := pathIDs(r, "ns", "pod", "container")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ns, pod, container := ids[0], ids[1], ids[2]
	q := r.URL.Query()
	boolParam := func(name string) (bool, error) {
		s := q.Get(name)
		if s == "" {
			return false, nil
		}
		return strconv.ParseBool(s)
	}
	follow, err1 := boolParam("follow")
	timestamps, err2 := boolParam("timestamps")
	previous, err3 := boolParam("previous")
	if err := errors.Join(err1, err2, err3); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tail := int64(-1)
	if s := q.Get("tailLines"); s != "" {
		if tail, err = strconv.ParseInt(s, 10, 64); err != nil || tail < 0 {
			http.Error(w, fmt.Sprintf("invalid tailLines %q", s), http.StatusBadRequest)
			return
		}
	}
	limit := int64(-1)
	if s := q.Get("limitBytes"); s != "" {
		if limit, err = strconv.ParseInt(s, 10, 64); err != nil || limit < 1 {
			http.Error(w, fmt.Sprintf("invalid limitBytes %q", s), http.StatusBadRequest)
			return
		}
	}
	if previous {
		// Our containers never restart, so, like a real kubelet for a container with
		// restartCount 0, there is no previous instance to show.
		http.Error(w, fmt.Sprintf("previous terminated container %q in pod %q not found", container, pod), http.StatusBadRequest)
		return
	}

	w.Header().Set("Content-Type", "text/plain")
	flusher, _ := w.(http.Flusher)
	remaining := limit
	// emit writes one line; false means stop (limit reached or client gone).
	emit := func(n int) bool {
		line := fmt.Sprintf("log line %d from %s/%s/%s\n", n, ns, pod, container)
		if timestamps {
			line = time.Now().UTC().Format(time.RFC3339Nano) + " " + line
		}
		if remaining >= 0 && int64(len(line)) > remaining {
			line = line[:remaining]
		}
		if _, err := io.WriteString(w, line); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		if remaining >= 0 {
			remaining -= int64(len(line))
			return remaining > 0
		}
		return true
	}

	first := 1
	if tail >= 0 && tail < initialLogLines {
		first = initialLogLines - int(tail) + 1
	}
	for n := first; n <= initialLogLines; n++ {
		if !emit(n) {
			return
		}
	}
	if !follow {
		return
	}
	if flusher != nil {
		// Send the headers now even when tailLines=0 left nothing to write, so the client
		// sees the stream open.
		flusher.Flush()
	}
	ticker := time.NewTicker(h.followInterval)
	defer ticker.Stop()
	for n := initialLogLines + 1; ; n++ {
		select {
		case <-r.Context().Done():
			return
		case <-ticker.C:
			if !emit(n) {
				return
			}
		}
	}
}

func (h *handlers) exec(w http.ResponseWriter, r *http.Request) {
	ids, err := pathIDs(r, "ns", "pod", "container")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	opts, err := remotecommandserver.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		http.Error(w, "missing command", http.StatusBadRequest)
		return
	}
	h.rt.execs.Add(1)
	defer h.rt.execs.Done()
	w, r = watchHijackedConn(w, r)
	// podName carries "ns/pod" because our runtime needs the namespace too (the real
	// kubelet passes its own "pod_namespace" full name here).
	remotecommandserver.ServeExec(w, r, h.rt, ids[0]+"/"+ids[1], types.UID(r.PathValue("uid")), ids[2], cmd,
		opts, streamIdleTimeout, streamCreationTimeout, remotecommandconsts.SupportedStreamingProtocols)
}

func (h *handlers) attach(w http.ResponseWriter, r *http.Request) {
	ids, err := pathIDs(r, "ns", "pod", "container")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	opts, err := remotecommandserver.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w, r = watchHijackedConn(w, r)
	remotecommandserver.ServeAttach(w, r, h.rt, ids[0]+"/"+ids[1], types.UID(r.PathValue("uid")), ids[2],
		opts, streamIdleTimeout, streamCreationTimeout, remotecommandconsts.SupportedStreamingProtocols)
}

func (h *handlers) portForward(w http.ResponseWriter, r *http.Request) {
	ids, err := pathIDs(r, "ns", "pod")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w, r = watchHijackedConn(w, r)
	// The streaming package hands PortForward a context.Background(); give the forwarder
	// the connection's context instead so forwarded TCP connections die with the session.
	fw := &forwarder{connCtx: r.Context()}
	portforward.ServePortForward(w, r, fw, ids[0]+"/"+ids[1], types.UID(r.PathValue("uid")),
		opts, streamIdleTimeout, streamCreationTimeout, portforward.SupportedProtocols)
}

// watchHijackedConn returns a ResponseWriter/Request pair whose request context is cancelled
// as soon as the upgraded (hijacked) connection fails to read or is closed. net/http stops
// watching a connection once it is hijacked, so without this an exec'd `sleep 1000` would
// outlive a kubectl that was killed; the real kubelet has the container runtime to clean up.
func watchHijackedConn(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	return &hijackWatcher{ResponseWriter: w, cancel: cancel}, r.WithContext(ctx)
}

type hijackWatcher struct {
	http.ResponseWriter
	cancel context.CancelFunc
}

func (h *hijackWatcher) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("response writer cannot hijack")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	// Reads must keep going through brw.Reader: it may already hold bytes of the upgraded
	// protocol that arrived together with the request.
	wc := &watchedConn{Conn: conn, r: brw.Reader, cancel: h.cancel}
	return wc, bufio.NewReadWriter(bufio.NewReader(wc), brw.Writer), nil
}

type watchedConn struct {
	net.Conn
	r      *bufio.Reader
	cancel context.CancelFunc
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil {
		c.cancel()
	}
	return n, err
}

func (c *watchedConn) Close() error {
	c.cancel()
	return c.Conn.Close()
}
