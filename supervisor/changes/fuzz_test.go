package changes

import (
	"reflect"
	"strings"
	"testing"
)

// sampleOps are the ops of a small apply, same-fs and copy mode.
var sampleOps = []op{
	{Op: opSwap, Layer: 0, Rel: "src/new.txt", New: "/var/lib/execgate/changes/r1/0-upper/src/new.txt", NewIno: 42},
	{Op: opSwap, Layer: 0, Rel: "mod.txt", OldType: File, New: "/var/lib/execgate/changes/r1/0-upper/mod.txt", Backup: "/var/lib/execgate/changes/r1/0-backup/1", NewIno: 43},
	{Op: opDelete, Layer: 0, Rel: "old", OldType: Dir, Backup: "/var/lib/execgate/changes/r1/0-backup/2"},
	{Op: opAttr, Layer: 0, Rel: ".", OldType: Dir, Mode: 0o750, UID: 1001, GID: 1001, OldMode: 0o755, OldUID: 1001, OldGID: 1001},
	{Op: opSwap, Layer: 1, Rel: "a/b", OldType: Symlink, New: ".execgate-r1-4.new", Src: "/var/lib/execgate/changes/r1/1-upper/a/b", Backup: ".execgate-r1-4.old", Beside: true},
}

func sampleLog(records ...logRecord) []byte {
	b := encodeIntent("r1", sampleOps)
	for _, r := range records {
		b = append(b, encodeRecord(r)...)
	}
	return b
}

func TestParseLog(t *testing.T) {
	zero, three := 0, 3
	full := sampleLog(logRecord{Staged: true, Inos: []uint64{0, 0, 0, 0, 99}}, logRecord{Done: &zero}, logRecord{Done: &three}, logRecord{Committed: true})
	cases := []struct {
		name                       string
		log                        []byte
		complete, staged, commited bool
		done                       int
	}{
		{"complete and committed", full, true, true, true, 4},
		{"torn commit", full[:len(full)-3], true, true, false, 4},
		{"intent only", sampleLog(), true, false, false, 0},
		{"torn intent", sampleLog()[:200], false, false, false, 0},
		{"empty", nil, false, false, false, 0},
		{"garbage", []byte("\x00\x00\x00\n\x00"), false, false, false, 0},
		{"staged with the wrong count of inodes", sampleLog(logRecord{Staged: true, Inos: []uint64{1}}), true, false, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lg, err := parseLog(tc.log)
			if err != nil {
				t.Fatal(err)
			}
			if lg.Complete != tc.complete || lg.Staged != tc.staged || lg.Committed != tc.commited || lg.Done != tc.done {
				t.Errorf("log %+v", lg)
			}
			if tc.complete && !tc.staged && !reflect.DeepEqual(lg.Ops, sampleOps) {
				t.Errorf("ops %+v", lg.Ops)
			}
			if tc.staged && lg.Ops[4].NewIno != 99 {
				t.Errorf("the staged inode: %+v", lg.Ops[4])
			}
		})
	}
	bad := strings.Replace(string(sampleLog()), `"rel":"mod.txt"`, `"rel":"../../etc/passwd"`, 1)
	if _, err := parseLog([]byte(bad)); err == nil {
		t.Error("an op leaving the workdir was accepted")
	}
}

// FuzzParseLog: any bytes parse without a panic, and what parses as a
// complete intent holds only valid ops and encodes back to itself.
func FuzzParseLog(f *testing.F) {
	zero := 0
	f.Add(sampleLog(logRecord{Done: &zero}, logRecord{Committed: true}))
	f.Add(sampleLog()[:150])
	f.Add([]byte(`{"v":1,"run":"r","ops":0}` + "\n" + `{"end":true}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		lg, err := parseLog(b)
		if err != nil || !lg.Complete {
			return
		}
		for i := range lg.Ops {
			if err := lg.Ops[i].valid(); err != nil {
				t.Fatalf("op %d accepted: %v", i, err)
			}
		}
		again, err := parseLog(encodeIntent(lg.Run, lg.Ops))
		if err != nil || !again.Complete || len(again.Ops) != len(lg.Ops) {
			t.Fatalf("round trip: %+v, %v", again, err)
		}
	})
}

// FuzzParseManifest: a manifest that parses names only clean absolute
// paths, with upper and work inside the layer's directory.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"version":1,"run":"r1","state_dir":"/var/lib/execgate","layers":[{"lower":"/srv/app","upper":"/var/lib/execgate/changes/r1/0-upper","work":"/var/lib/execgate/changes/r1/0-work","dir":"/var/lib/execgate/changes/r1"}]}`))
	f.Add([]byte(`{"version":1,"run":"r1","layers":[{"lower":"/srv","upper":"/x/../y","work":"/w","dir":"/"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseManifest(b)
		if err != nil {
			return
		}
		for _, l := range m.Layers {
			if !cleanAbs(l.Upper) || !strings.HasPrefix(l.Upper, l.Dir+"/") || !strings.HasPrefix(l.Work, l.Dir+"/") {
				t.Fatalf("layer accepted: %+v", l)
			}
		}
	})
}

// FuzzParseMountinfo: any bytes parse without a panic.
func FuzzParseMountinfo(f *testing.F) {
	f.Add([]byte("22 27 0:21 / /proc rw,relatime - proc proc rw\n36 27 0:33 / /srv/my\\040dir rw shared:1 - ext4 /dev/vdb rw\n"))
	f.Add([]byte("1 2 3 4 5 6 -\n\\"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range parseMountinfo(b) {
			if m.Point == "" && m.FSType == "" {
				t.Fatalf("empty entry from %q", b)
			}
		}
	})
}

func TestParseMountinfo(t *testing.T) {
	got := parseMountinfo([]byte("36 27 0:33 / /srv/my\\040dir rw shared:1 - ext4 /dev/vdb rw\nbroken line\n"))
	if len(got) != 1 || got[0] != (mountEntry{ID: 36, Point: "/srv/my dir", FSType: "ext4"}) {
		t.Errorf("mounts %+v", got)
	}
}
