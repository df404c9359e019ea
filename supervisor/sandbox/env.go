package sandbox

import "strings"

// neverPass are variables that turn an allowed program into arbitrary code
// (dynamic loader, interpreter start-up hooks) or change how a shell parses
// the script the static check already approved. A pass list is the admin's
// explicit choice, but these are never safe to take from an agent's
// request, so FilterEnv drops them even when listed, and Run drops them from
// Spec.Env too.
var neverPass = map[string]bool{
	"GLIBC_TUNABLES": true, "GCONV_PATH": true, "HOSTALIASES": true, "LOCPATH": true,
	"NLSPATH": true, "RESOLV_HOST_CONF": true, "MALLOC_TRACE": true,
	"BASH_ENV": true, "ENV": true, "SHELLOPTS": true, "BASHOPTS": true,
	"PS4": true, "PROMPT_COMMAND": true, "IFS": true, "CDPATH": true,
	"NODE_OPTIONS": true, "NODE_PATH": true,
	"PYTHONSTARTUP": true, "PYTHONPATH": true, "PYTHONHOME": true, "PYTHONINSPECT": true,
	"PERL5OPT": true, "PERL5LIB": true, "PERLLIB": true, "PERL5DB": true,
	"RUBYOPT": true, "RUBYLIB": true,
	"JAVA_TOOL_OPTIONS": true, "_JAVA_OPTIONS": true, "JDK_JAVA_OPTIONS": true,
}

// neverPassPrefix are families: LD_* (loader), BASH_FUNC_* (exported
// functions, which can shadow any command name), DYLD_* (the macOS loader).
var neverPassPrefix = []string{"LD_", "BASH_FUNC_", "DYLD_"}

// NeverPassed reports whether the variable name is always dropped.
func NeverPassed(name string) bool {
	if neverPass[name] {
		return true
	}
	for _, p := range neverPassPrefix {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// FilterEnv builds a run's environment. It keeps the variables of from
// ("KEY=VALUE"; the last one wins) whose name is in pass; an entry of pass
// ending in "*" passes every name with that prefix ("LC_*"). Variables that
// NeverPassed reports are dropped even when listed. HOME, USER, LOGNAME and
// PWD are then set for the agent, replacing any passed value.
func FilterEnv(pass []string, from []string, home, user, pwd string) []string {
	allowed := func(name string) bool {
		if NeverPassed(name) {
			return false
		}
		for _, p := range pass {
			if p == name || strings.HasSuffix(p, "*") && strings.HasPrefix(name, p[:len(p)-1]) {
				return true
			}
		}
		return false
	}
	fixed := map[string]string{"HOME": home, "USER": user, "LOGNAME": user, "PWD": pwd}
	idx := map[string]int{}
	var out []string
	for _, kv := range from {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || name == "" || strings.ContainsRune(kv, 0) {
			continue
		}
		if _, isFixed := fixed[name]; isFixed || !allowed(name) {
			continue
		}
		if i, seen := idx[name]; seen {
			out[i] = kv
			continue
		}
		idx[name] = len(out)
		out = append(out, kv)
	}
	for _, name := range []string{"HOME", "USER", "LOGNAME", "PWD"} {
		out = append(out, name+"="+fixed[name])
	}
	return out
}

// scrubEnv drops malformed entries and the never-passed variables.
func scrubEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || name == "" || strings.ContainsRune(kv, 0) || NeverPassed(name) {
			continue
		}
		out = append(out, kv)
	}
	return out
}
