package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"
	"time"
)

func bytesSource(name string, b []byte) chainSource {
	return chainSource{name: name, open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }}
}

func verifyBytes(t *testing.T, head string, files ...[]byte) *VerifyResult {
	t.Helper()
	srcs := make([]chainSource, len(files))
	for i, f := range files {
		srcs[i] = bytesSource("f", f)
	}
	res, err := verifySources(srcs, VerifyOptions{Head: head})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// fuzzChain writes one record per piece of msgs (split on '|') with the
// sink's chain code. A piece starting with "~" is a record torn by a
// crash instead: the first len(piece) bytes of its line, never the
// whole; the chain then resumes after it as the sink does on a restart.
func fuzzChain(t testing.TB, msgs []byte) (file []byte, head string) {
	var c chain
	for i, m := range bytes.Split(msgs, []byte("|")) {
		if i == 40 {
			break
		}
		torn, isTorn := bytes.CutPrefix(m, []byte("~"))
		r := New(EventExec, PriInfo, string(torn)).Set(FieldAgent, "a"+string(torn))
		r.Time = time.UnixMicro(int64(i) + 1748800000000000)
		buf := appendFields(make([]byte, maxPrefix), r)
		line := c.link(append(buf, '}', '\n'), maxPrefix)
		if isTorn {
			file = append(append(file, line[:min(len(m), len(line)-2)]...), '\n')
			if err := c.resume(bytes.NewReader(file), int64(len(file))); err != nil {
				t.Fatal(err)
			}
			continue
		}
		c.advance(line[:len(line)-1])
		file = append(file, line...)
	}
	if c.seq == 0 {
		return file, ""
	}
	return file, hex.EncodeToString(c.prev[:])
}

// FuzzVerifyChain feeds arbitrary bytes to the verifier (it must not
// fail or panic, and what it counts must add up), and checks that a chain
// the sink's code writes verifies, and that with its head noted any
// change of one byte is found.
func FuzzVerifyChain(f *testing.F) {
	seed, _ := fuzzChain(f, []byte("git status|~{\"EXECGATE_PREV\":\"00|npm test|x\xffy|\u2028"))
	f.Add(seed, []byte("one|two|three"), uint16(100), byte(1))
	f.Add([]byte(""), []byte(""), uint16(0), byte(0))
	f.Add([]byte("\n\n{}\n{\"EXECGATE_PREV\":\""+Genesis+"\",\"EXECGATE_SEQ\":\"1\"}\n"), []byte("~torn|~again|after"), uint16(7), byte('\n'))
	f.Add([]byte(`{"EXECGATE_PREV":"`+Genesis+`","EXECGATE_SEQ":"1","EXECGATE_TORN":"`+Genesis+`"}`+"\n"+"garbage\n{\"EXECGATE_PREV\":\"zz"), []byte("|"), uint16(3), byte('}'))
	f.Add(bytes.Repeat([]byte(`{"EXECGATE_PREV":"`+strings.Repeat("ab", 32)+`","EXECGATE_SEQ":"18446744073709551615"}`+"\n"), 3), []byte("~|~|~"), uint16(65535), byte(0x80))
	f.Fuzz(func(t *testing.T, data, msgs []byte, at uint16, flip byte) {
		res := verifyBytes(t, "", data)
		if res.Records > res.Lines || res.Breaks < 0 || len(res.Findings) > MaxFindings || len(res.Head) != 64 {
			t.Fatalf("inconsistent result %+v", res)
		}
		for _, fd := range res.Findings {
			if fd.Line < 0 || fd.Line > res.Lines+1 || fd.Msg == "" {
				t.Fatalf("bad finding %+v", fd)
			}
		}
		verifyBytes(t, "", data, data) // two files: must not fail either

		file, head := fuzzChain(t, msgs)
		good := verifyBytes(t, head, file)
		if !good.Intact() || (head != "" && (good.Head != head || good.NotedHead != head)) {
			t.Fatalf("the sink's chain does not verify:\n%s\n%+v", file, good.Findings)
		}
		if head == "" || len(file) == 0 {
			return
		}
		mutated := bytes.Clone(file)
		i := int(at) % len(mutated)
		if flip == 0 {
			flip = 1
		}
		mutated[i] ^= flip
		if res := verifyBytes(t, head, mutated); res.Intact() {
			t.Fatalf("byte %d changed (%q -> %q) but the chain with its head verifies:\n%s", i, file[i], mutated[i], mutated)
		}
		// Cut at a line boundary: intact without the head, caught with it.
		if cut := bytes.LastIndexByte(file[:len(file)-1], '\n'); cut > 0 {
			last := bytes.TrimSuffix(file[cut+1:], []byte("\n"))
			if sum := sha256.Sum256(last); isRecordLine(last) && hex.EncodeToString(sum[:]) == head {
				if res := verifyBytes(t, "", file[:cut+1]); !res.Intact() {
					t.Fatalf("a chain cut at a line verifies broken: %+v", res.Findings)
				}
				if res := verifyBytes(t, head, file[:cut+1]); res.Intact() {
					t.Fatal("a chain cut before its noted head verifies")
				}
			}
		}
	})
}
