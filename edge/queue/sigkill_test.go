package queue_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/unico-cdp/unico/edge/queue"
	"github.com/unico-cdp/unico/protocol"
)

// childEnv switches the test binary into the appender process of
// TestSIGKILLDurability; its value is the queue directory.
const childEnv = "UNICO_QUEUE_TEST_CHILD"

const (
	childAppenders = 4
	childBatch     = 50
)

// childEvent is deterministic in (cycle, goroutine, batch, i), so the
// parent can rebuild every acknowledged event from one stdout line.
func childEvent(cycle, g, b, i int) protocol.Event {
	e := event("pos", b*childBatch+i)
	e.ID = fmt.Sprintf("c%d-g%d-b%d-i%d", cycle, g, b, i)
	return e
}

// runChild appends from several goroutines until killed and prints
// "cycle g b first-seq" after each Append returned nil; the parent rebuilds the
// acknowledged events with childEvent.
func runChild() int {
	dir := os.Getenv(childEnv)
	cycle, _ := strconv.Atoi(os.Getenv(childEnv + "_CYCLE"))
	q, err := queue.Open(queue.Options{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var out sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range childAppenders {
		wg.Go(func() {
			for b := 0; ; b++ {
				evs := make([]protocol.Event, childBatch)
				for i := range evs {
					evs[i] = childEvent(cycle, g, b, i)
				}
				first, err := q.AppendSeq(context.Background(), evs)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				out.Lock()
				fmt.Fprintf(w, "%d %d %d %d\n", cycle, g, b, first)
				w.Flush()
				out.Unlock()
			}
		})
	}
	wg.Wait()
	return 0
}

func TestSIGKILLDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary and kills it")
	}
	dir := t.TempDir()
	acked := map[string]ackedEvent{} // by event id, every acknowledged event
	for cycle := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+dir, childEnv+"_CYCLE="+strconv.Itoa(cycle))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a random number of acknowledged appends, never a
		// fixed sleep.
		killAfter := 20 + rand.IntN(200)
		lines := 0
		sc := bufio.NewScanner(stdout)
		deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
		for sc.Scan() {
			var c, g, b int
			var first uint64
			if _, err := fmt.Sscanf(sc.Text(), "%d %d %d %d", &c, &g, &b, &first); err != nil {
				t.Fatalf("child line %q: %v", sc.Text(), err)
			}
			for i := range childBatch {
				e := childEvent(c, g, b, i)
				acked[e.ID] = ackedEvent{first + uint64(i), encoded(t, e)}
			}
			lines++
			if lines == killAfter {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
		}
		deadline.Stop()
		err = cmd.Wait()
		if lines < killAfter {
			t.Fatalf("cycle %d: child stopped after %d appends (%v): %s", cycle, lines, err, stderr.String())
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("cycle %d: child was not killed: %v", cycle, err)
		}
		checkAcked(t, dir, acked, cycle)
	}
}

type ackedEvent struct {
	seq  uint64
	data []byte
}

// checkAcked reopens the queue and checks every acknowledged event is
// present with its exact bytes under the seq it was acknowledged with,
// and that seqs are unique and increasing.
func checkAcked(t *testing.T, dir string, acked map[string]ackedEvent, cycle int) {
	t.Helper()
	q := open(t, queue.Options{Dir: dir})
	defer closeQ(t, q)
	st := q.Stats()
	found := map[string]uint64{}
	var prev uint64
	var n int64
	for from := uint64(0); ; {
		recs, err := q.Read(from, 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			if r.Seq <= prev {
				t.Fatalf("cycle %d: seq %d after %d", cycle, r.Seq, prev)
			}
			prev = r.Seq
			n++
			var e protocol.Event
			if err := protocol.UnmarshalEvent(r.Data, &e); err != nil {
				t.Fatalf("cycle %d: seq %d: %v", cycle, r.Seq, err)
			}
			if s, dup := found[e.ID]; dup {
				t.Fatalf("cycle %d: event %s stored twice (seqs %d and %d)", cycle, e.ID, s, r.Seq)
			}
			found[e.ID] = r.Seq
			if want, ok := acked[e.ID]; ok {
				if want.seq != r.Seq {
					t.Fatalf("cycle %d: event %s at seq %d, acknowledged as %d", cycle, e.ID, r.Seq, want.seq)
				}
				if diff := cmp.Diff(want.data, r.Data); diff != "" {
					t.Fatalf("cycle %d: event %s changed (-want +got):\n%s", cycle, e.ID, diff)
				}
			}
		}
		from = prev + 1
	}
	var missing []string
	for id := range acked {
		if _, ok := found[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("cycle %d: %d acknowledged events lost, e.g. %s", cycle, len(missing), strings.Join(missing[:min(5, len(missing))], ", "))
	}
	if st.Depth != n || st.NextSeq != prev+1 || st.HeadSeq != 1 {
		t.Fatalf("cycle %d: stats %+v, read %d records up to seq %d", cycle, st, n, prev)
	}
	t.Logf("cycle %d: %d acknowledged events, %d stored, seqs 1..%d", cycle, len(acked), n, prev)
}
