package shellparse

import (
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"git status", "a && b || c; d &", "(cd x; { y; })", "echo $(a `b` $((1+$(c))))",
		"diff <(ls) >(cat)", "f() { g; }; f", "if a; then b; elif c; then d; else e; fi",
		"for i in a b; do x $i; done", "while read l; do :; done < f", "case $x in a) b;; esac",
		"cat <<EOF\n$(x)\nEOF", "sh -c 'bash -c \"git push\"'", "env -S 'a b' c", "xargs -I{} x {}",
		"find . -exec a {} \\; -execdir b {} +", "git -c alias.x='!sh -c y' x", "npm --silent run-script build",
		"alias g=git\ng push", "eval \"$X\"", "trap 'x' EXIT", "$'\\x67it' push", "{a,b}c", "~/x ~y/z",
		"timeout -k 1 5 nice -n 1 nohup setsid stdbuf -oL flock f watch -n 1 git status",
	} {
		f.Add(s, "/bin/bash")
		f.Add(s, "/bin/sh")
	}
	f.Fuzz(func(t *testing.T, s, shell string) {
		invs, err := Parse(s, Options{Dir: "/srv", Home: "/home/u", Shell: shell, LookPath: fakeLook})
		if err != nil {
			return
		}
		for _, inv := range invs {
			if inv.Role != RedirectOnly && len(inv.Args) == 0 {
				t.Fatalf("invocation without argv in %q", s)
			}
			if len(inv.Via) > MaxNesting+8 {
				t.Fatalf("via chain too long: %q", inv.Via)
			}
			_ = inv.String()
		}
		if strings.Count(s, "\n") > 1000 {
			return
		}
	})
}

func FuzzUnwrap(f *testing.F) {
	f.Add("env -i -u X A=1 -S 'x y' z")
	f.Add("xargs -0 -I{} -n1 sh -c '{}'")
	f.Add("su - root -c x")
	f.Fuzz(func(t *testing.T, s string) {
		ws := strings.Fields(s)
		if len(ws) == 0 {
			return
		}
		args := make([]Word, len(ws))
		for i, w := range ws {
			args[i] = Word{Text: w, Multi: strings.HasPrefix(w, "$")}
		}
		for _, in := range Unwrap(ws[0], args, nil) {
			_ = in.Label
		}
		Normalize("git", args, "")
		Normalize("npm", args, "")
	})
}
