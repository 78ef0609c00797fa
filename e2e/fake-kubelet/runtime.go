package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/utils/exec"
)

func logf(format string, args ...any) { log.Printf(format, args...) }

// How long to wait for a command's output to drain after it exited (a backgrounded
// grandchild may hold the pipe or pty open forever).
const outputDrainTimeout = 2 * time.Second

// runtime is the "container runtime": exec runs host processes, attach talks to an echo
// process, port-forward dials host ports. It implements the Executor and Attacher
// interfaces of k8s.io/kubelet/pkg/cri/streaming/remotecommand.
type runtime struct {
	root string

	mu     sync.Mutex
	pgids  map[int]struct{} // process groups of running exec'd commands
	closed bool

	execs sync.WaitGroup // exec sessions still being served (see waitExecs)
}

func newRuntime(root string) *runtime {
	return &runtime{root: root, pgids: map[int]struct{}{}}
}

// containerDir gives each fake container its own persistent working directory (and $HOME),
// so files written by one exec are seen by the next, as in a real container.
func (rt *runtime) containerDir(podName, container string) (string, error) {
	ns, pod, ok := strings.Cut(podName, "/")
	if !ok {
		return "", fmt.Errorf("bad pod name %q", podName)
	}
	dir := filepath.Join(rt.root, ns, pod, container)
	return dir, os.MkdirAll(dir, 0o755)
}

func (rt *runtime) track(pgid int) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.closed {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return errors.New("fake kubelet is shutting down")
	}
	rt.pgids[pgid] = struct{}{}
	return nil
}

func (rt *runtime) untrack(pgid int) {
	rt.mu.Lock()
	delete(rt.pgids, pgid)
	rt.mu.Unlock()
}

// killAll kills every running exec'd process group; no new ones start afterwards.
func (rt *runtime) killAll() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.closed = true
	for pgid := range rt.pgids {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// waitExecs gives exec sessions whose processes killAll just killed up to d to report the
// exit status to their clients: "command terminated with exit code 137" instead of a
// connection that silently ends (which kubectl reports as success).
func (rt *runtime) waitExecs(d time.Duration) {
	done := make(chan struct{})
	go func() { rt.execs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// ExecInContainer runs cmd on the host in the container's directory. ctx is cancelled when
// the client connection goes away (see watchHijackedConn); the whole process group is then
// killed. A non-zero exit is returned as a utilexec.ExitError, which ServeExec turns into the
// NonZeroExitCode status that makes kubectl exit with the same code.
func (rt *runtime) ExecInContainer(ctx context.Context, podName string, _ types.UID, container string, cmd []string,
	in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, timeout time.Duration) error {
	dir, err := rt.containerDir(podName, container)
	if err != nil {
		return err
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}

	c := exec.CommandContext(ctx, cmd[0], cmd[1:]...)
	c.Dir = dir
	// A container does not inherit the node's environment; give it just enough to work.
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	_, pod, _ := strings.Cut(podName, "/")
	c.Env = []string{"PATH=" + path, "HOME=" + dir, "HOSTNAME=" + pod}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = outputDrainTimeout

	if tty {
		c.Env = append(c.Env, "TERM=xterm")
		err = rt.runWithTTY(c, in, out, resize)
	} else {
		err = rt.runWithPipes(c, in, out, errOut)
	}
	return exitError(err)
}

func (rt *runtime) runWithPipes(c *exec.Cmd, in io.Reader, out, errOut io.WriteCloser) error {
	// Without a TTY there is never a resize stream (the channel is nil), nothing to drain.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdin io.WriteCloser
	if in != nil {
		// A pipe (not c.Stdin = in): Wait closes it when the process exits, so a client that
		// keeps stdin open (kubectl exec -i ... -- true) does not keep the exec alive.
		var err error
		if stdin, err = c.StdinPipe(); err != nil {
			return err
		}
	}
	if out != nil {
		c.Stdout = out
	}
	if errOut != nil {
		c.Stderr = errOut
	}
	if err := c.Start(); err != nil {
		return err
	}
	if err := rt.track(c.Process.Pid); err != nil {
		_ = c.Wait()
		return err
	}
	defer rt.untrack(c.Process.Pid)
	if stdin != nil {
		go func() {
			_, _ = io.Copy(stdin, in)
			// Client closed stdin (EOF): pass the EOF on, like a runtime closing the
			// container's stdin.
			_ = stdin.Close()
		}()
	}
	return c.Wait()
}

func (rt *runtime) runWithTTY(c *exec.Cmd, in io.Reader, out io.Writer, resize <-chan remotecommand.TerminalSize) error {
	master, slave, err := openPTY()
	if err != nil {
		return fmt.Errorf("allocating a pty: %w", err)
	}
	defer master.Close()
	c.Stdin, c.Stdout, c.Stderr = slave, slave, slave
	// New session with the pty as controlling terminal (fd 0 in the child), so ^C, job
	// control and SIGWINCH work like in a container started with tty: true.
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	err = c.Start()
	_ = slave.Close() // the child has its copy; keeping ours would hide the child's exit (no EIO)
	if err != nil {
		return err
	}
	if err := rt.track(c.Process.Pid); err != nil {
		_ = c.Wait()
		return err
	}
	defer rt.untrack(c.Process.Pid)

	if resize != nil {
		go func() {
			for size := range resize {
				setWinsize(master, size)
			}
		}()
	}
	if in != nil {
		go func() { _, _ = io.Copy(master, in) }()
	}
	if out == nil {
		out = nopWriteCloser{io.Discard} // the pty must still be drained or the child blocks
	}
	outDone := make(chan struct{})
	go func() {
		// Ends with EIO once every holder of the slave side has exited.
		_, _ = io.Copy(out, master)
		close(outDone)
	}()
	err = c.Wait()
	select {
	case <-outDone:
	case <-time.After(outputDrainTimeout):
	}
	return err
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// exitError maps a finished process onto what ServeExec understands: an ExitError carrying
// the exit code (128+signal for a killed process, as a shell would report it).
func exitError(err error) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return err
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok {
		return err
	}
	code := ws.ExitStatus()
	if ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	return utilexec.CodeExitError{Err: err, Code: code}
}

// openPTY allocates a pseudo-terminal pair without cgo. The master is non-blocking so it
// is registered with Go's poller: Close then interrupts a pending Read.
func openPTY() (master, slave *os.File, err error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*os.File, *os.File, error) {
		_ = unix.Close(fd)
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil { // unlockpt
		return fail(err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN) // ptsname
	if err != nil {
		return fail(err)
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.FormatUint(uint64(n), 10), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fail(err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		slave.Close()
		return fail(err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), slave, nil
}

func setWinsize(master *os.File, size remotecommand.TerminalSize) {
	rc, err := master.SyscallConn() // not Fd(): that would switch the fd back to blocking
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: size.Height, Col: size.Width})
	})
}

// AttachContainer attaches to the container's "main process", here a built-in echo: every
// byte read from stdin is written back to stdout, and the session ends when stdin is closed
// (or, without stdin, when the client goes away). Each attach gets its own echo.
func (rt *runtime) AttachContainer(ctx context.Context, _ string, _ types.UID, _ string,
	in io.Reader, out, _ io.WriteCloser, _ bool, resize <-chan remotecommand.TerminalSize) error {
	if resize != nil {
		go func() {
			for range resize { // an echo has no window size
			}
		}()
	}
	if in == nil {
		<-ctx.Done()
		return nil
	}
	var dst io.Writer = io.Discard
	if out != nil {
		dst = out
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(dst, in)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return nil
	}
}

// forwarder implements the portforward.PortForwarder interface for one streaming connection:
// pod port P is 127.0.0.1:P on this host.
type forwarder struct {
	connCtx context.Context
}

func (f *forwarder) PortForward(_ context.Context, _ string, _ types.UID, port int32, stream io.ReadWriteCloser) error {
	var d net.Dialer
	conn, err := d.DialContext(f.connCtx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		// Returned errors are written to the error stream; kubectl prints them.
		return fmt.Errorf("failed to connect to localhost:%d: %w", port, err)
	}
	defer conn.Close()

	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-f.connCtx.Done(): // the session died: unblock the copy below
			conn.Close()
		case <-done:
		}
	}()
	go func() {
		_, err := io.Copy(conn, stream)
		if tcp, ok := conn.(*net.TCPConn); ok && err == nil {
			_ = tcp.CloseWrite() // client half-closed: let the server see EOF and answer
		} else {
			conn.Close() // stream reset: abandon the connection
		}
	}()
	// The forwarded connection is over once the server side is done sending.
	_, _ = io.Copy(stream, conn)
	return nil
}
