package supervisor

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/policy"
	"github.com/execgate/execgate/profiles"
	"github.com/execgate/execgate/shellparse"
	"github.com/execgate/execgate/supervisor/sandbox"
)

// requestError is a bad request: an HTTP status and a clear message.
type requestError struct {
	code int
	msg  string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(code int, format string, args ...any) *requestError {
	return &requestError{code: code, msg: fmt.Sprintf(format, args...)}
}

// asRequestError is err as a *requestError; any other error is a 400
// with err's text.
func asRequestError(err error) *requestError {
	var re *requestError
	if errors.As(err, &re) {
		return re
	}
	return &requestError{code: http.StatusBadRequest, msg: err.Error()}
}

// headLimit caps the JSON head of a request; stdin after it is not capped.
type headLimit struct {
	r        io.Reader
	left     int64
	exceeded bool
	off      bool
}

func (h *headLimit) Read(p []byte) (int, error) {
	if h.off {
		return h.r.Read(p)
	}
	if h.left <= 0 {
		h.exceeded = true
		return 0, errors.New("request head too large")
	}
	if int64(len(p)) > h.left {
		p = p[:h.left]
	}
	n, err := h.r.Read(p)
	h.left -= int64(n)
	return n, err
}

// readRequest decodes the JSON head of /v1/exec or /v1/check and returns
// the rest of the body as the script's stdin when the request asks for it.
func readRequest(r *http.Request) (api.ExecRequest, io.Reader, error) {
	var req api.ExecRequest
	lim := &headLimit{r: r.Body, left: MaxRequestHeader}
	dec := json.NewDecoder(lim)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if lim.exceeded {
			return req, nil, badRequest(http.StatusRequestEntityTooLarge, "request is larger than %d bytes", MaxRequestHeader)
		}
		return req, nil, badRequest(http.StatusBadRequest, "malformed request: %v", err)
	}
	switch {
	case len(req.Script) > policy.MaxScript:
		return req, nil, badRequest(http.StatusRequestEntityTooLarge, "script is %d bytes, larger than the %d-byte limit", len(req.Script), policy.MaxScript)
	case strings.TrimSpace(req.Script) == "":
		return req, nil, badRequest(http.StatusBadRequest, "empty script")
	case strings.IndexByte(req.Script, 0) >= 0:
		return req, nil, badRequest(http.StatusBadRequest, "script contains a NUL byte")
	case !utf8.ValidString(req.Script):
		return req, nil, badRequest(http.StatusBadRequest, "script is not valid UTF-8")
	case len(req.Args) > 4096:
		return req, nil, badRequest(http.StatusBadRequest, "more than 4096 args")
	case req.Timeout < 0:
		return req, nil, badRequest(http.StatusBadRequest, "negative timeout")
	}
	for _, a := range req.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return req, nil, badRequest(http.StatusBadRequest, "an argument contains a NUL byte")
		}
	}
	for k, v := range req.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return req, nil, badRequest(http.StatusBadRequest, "bad environment variable %q", k)
		}
	}
	if !req.Stdin {
		return req, nil, nil
	}
	lim.off = true
	rest := io.MultiReader(dec.Buffered(), r.Body)
	return req, skipNewline(rest), nil
}

// skipNewline drops the one newline the client writes after the JSON head.
func skipNewline(r io.Reader) io.Reader {
	var first [1]byte
	return &lazyReader{r: r, first: first[:]}
}

type lazyReader struct {
	r     io.Reader
	first []byte
	done  bool
}

func (l *lazyReader) Read(p []byte) (int, error) {
	if !l.done {
		l.done = true
		n, err := io.ReadFull(l.r, l.first)
		if n == 1 && l.first[0] != '\n' {
			if len(p) == 0 {
				return 0, nil
			}
			p[0] = l.first[0]
			return 1, nil
		}
		if err != nil {
			return 0, io.EOF
		}
	}
	return l.r.Read(p)
}

// resolveCwd checks the working directory: absolute, existing, a directory,
// and inside one of the profile's workdirs after symlinks are resolved (a
// link the agent made cannot lead out).
func resolveCwd(p *profiles.Profile, cwd string) (string, error) {
	if cwd == "" {
		cwd = p.Workdirs[0]
	}
	if !filepath.IsAbs(cwd) || strings.IndexByte(cwd, 0) >= 0 {
		return "", badRequest(http.StatusBadRequest, "cwd %q must be an absolute path", cwd)
	}
	real, err := filepath.EvalSymlinks(cwd)
	if err != nil {
		return "", badRequest(http.StatusBadRequest, "cwd %s does not exist", cwd)
	}
	if st, err := os.Stat(real); err != nil || !st.IsDir() {
		return "", badRequest(http.StatusBadRequest, "cwd %s is not a directory", cwd)
	}
	for _, wd := range p.Workdirs {
		rwd, err := filepath.EvalSymlinks(wd)
		if err != nil {
			continue
		}
		if real == rwd || strings.HasPrefix(real, rwd+"/") {
			return real, nil
		}
	}
	return "", badRequest(http.StatusForbidden, "cwd %s lies outside the agent's workdirs %v", cwd, p.Workdirs)
}

func newID() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (.errcheck-excludes)
	return hex.EncodeToString(b[:])
}

// runState is a run in progress.
type runState struct {
	api.Run
	cancel context.CancelFunc
}

func (s *Server) runList() []api.Run {
	s.mu.Lock()
	out := make([]api.Run, 0, len(s.runs))
	for _, r := range s.runs {
		out = append(out, r.Run)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}

// reqInfo carries what every record of one request repeats.
type reqInfo struct {
	id      string
	prof    *profiles.Profile
	peer    Peer
	cwd     string
	initPid int // the run's init (host pid), once started
}

func (ri *reqInfo) record(ev audit.Event, pri int, msg string) *audit.Record {
	r := audit.New(ev, pri, ri.prof.Name+" "+msg).Set(audit.FieldID, ri.id).Set(audit.FieldAgent, ri.prof.Name).
		SetInt(audit.FieldUID, int64(ri.peer.UID)).SetInt(audit.FieldPeerPID, int64(ri.peer.PID)).
		Set(audit.FieldProfileSHA256, ri.prof.SHA256).Set(audit.FieldCwd, ri.cwd)
	return r
}

func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request, c caller) {
	prof := c.prof
	req, _, err := readRequest(r)
	if err == nil && req.Stdin {
		err = badRequest(http.StatusBadRequest, "check takes no stdin")
	}
	var cwd string
	if err == nil {
		cwd, err = resolveCwd(prof, req.Cwd)
	}
	if err != nil {
		re := asRequestError(err)
		writeError(w, re.code, api.Error{Error: re.msg})
		return
	}
	env := s.env(prof, req, cwd)
	res := policy.Decide(prof, req.Script, policy.Options{Dir: cwd, Path: envValue(env, "PATH"), RuntimeCheck: s.runtimeCheck, LookPath: s.look.LookPath})
	writeJSON(w, http.StatusOK, res.Report(prof, cwd))
}

// env builds the run's environment from the request's.
func (s *Server) env(p *profiles.Profile, req api.ExecRequest, cwd string) []string {
	from := make([]string, 0, len(req.Env))
	for k, v := range req.Env {
		from = append(from, k+"="+v)
	}
	sort.Strings(from)
	env := sandbox.FilterEnv(p.EnvPass, from, p.Home, p.User, cwd)
	if envValue(env, "PATH") == "" {
		env = append(env, "PATH="+shellparse.DefaultPath)
	}
	return env
}

// setEnv returns env with each NAME=VALUE of set in place of any earlier
// value of NAME: what execgate sets for the run, env.pass cannot override.
func setEnv(env, set []string) []string {
	names := map[string]bool{}
	for _, kv := range set {
		k, _, _ := strings.Cut(kv, "=")
		names[k] = true
	}
	out := make([]string, 0, len(env)+len(set))
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); !names[k] {
			out = append(out, kv)
		}
	}
	return append(out, set...)
}

func envValue(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == name {
			return v
		}
	}
	return ""
}

// maxAllowRecords bounds the allow-decision records of one request; every
// deny and ask is recorded.
const maxAllowRecords = 64

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return ""
}

func endPriority(code int, res *sandbox.Result) int {
	if res == nil && code != 0 {
		return audit.PriWarning
	}
	return audit.PriInfo
}

func endMessage(code int, res *sandbox.Result) string {
	if res == nil {
		return fmt.Sprintf("END not run (exit %d)", code)
	}
	m := fmt.Sprintf("END exit %d in %s", res.Exit, res.Duration.Round(time.Millisecond))
	switch {
	case res.TimedOut:
		m += " (timed out)"
	case res.Killed:
		m += " (killed)"
	case res.OOMKilled:
		m += " (out of memory)"
	}
	return m
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func (s *Server) requestRecord(ri *reqInfo, req api.ExecRequest) *audit.Record {
	line := strings.Join(strings.Fields(req.Script), " ")
	if utf8.RuneCountInString(line) > 200 {
		line = string([]rune(line)[:200]) + "..."
	}
	names := make([]string, 0, len(req.Env))
	for k := range req.Env {
		names = append(names, k)
	}
	sort.Strings(names)
	rec := ri.record(audit.EventRequest, audit.PriInfo, "REQUEST").Set(audit.FieldScriptSHA256, sha(req.Script)).
		Set(audit.FieldEnvNames, strings.Join(names, ","))
	if ri.prof.Audit.Script != profiles.AuditScriptSHA256 {
		rec.Set(audit.FieldScript, req.Script)
		rec.Message += " " + line
	} else {
		rec.Message += " sha256:" + rec.Fields[audit.FieldScriptSHA256][:16]
	}
	return rec
}

// register counts a run against its agent's concurrency cap.
func (s *Server) register(ri *reqInfo, req api.ExecRequest, cancel context.CancelFunc) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := ri.prof.Name
	if lim := ri.prof.Limits.Concurrent; lim > 0 && s.perAgent[name] >= lim {
		return fmt.Sprintf("agent %s already has %d runs, its limits.concurrent", name, lim)
	}
	s.perAgent[name]++
	s.runs[ri.id] = &runState{Run: api.Run{ID: ri.id, Agent: name, UID: ri.peer.UID, PeerPID: ri.peer.PID, Script: req.Script,
		Cwd: ri.cwd, Started: s.now(), State: "running"}, cancel: cancel}
	return ""
}

func (s *Server) unregister(ri *reqInfo) {
	s.mu.Lock()
	delete(s.runs, ri.id)
	s.perAgent[ri.prof.Name]--
	s.mu.Unlock()
}

// spec turns a profile and request into the sandbox's plain settings.
func (s *Server) spec(p *profiles.Profile, ri *reqInfo, req api.ExecRequest, cwd string, env []string) sandbox.Spec {
	lim := sandbox.Limits{Timeout: p.Limits.Timeout, Memory: p.Limits.Memory, Pids: p.Limits.Pids, CPU: p.Limits.CPU, Output: p.Limits.Output}
	if t := time.Duration(req.Timeout); t > 0 && (lim.Timeout == 0 || t < lim.Timeout) {
		lim.Timeout = t // a request may shorten the profile's timeout, never lengthen it
	}
	roots := append(append([]string{}, p.Workdirs...), cwd)
	if filepath.IsAbs(p.Home) {
		roots = append(roots, p.Home)
	}
	return sandbox.Spec{
		ID: ri.id, Agent: p.Name, Shell: p.Shell, Script: req.Script, Args: req.Args, Dir: cwd,
		UID: uint32(p.UID), GID: uint32(p.GID), Home: p.Home, User: p.User, Env: env,
		DenyRead: p.DenyRead.Set, WalkRoots: roots, ReadOnly: p.ReadOnly.Set.Roots(),
		Network: p.Network == profiles.NetworkHost, Limits: lim,
	}
}

// writeDecisions journals every deny and ask verdict and up to
// maxAllowRecords allows.
func (s *Server) writeDecisions(ri *reqInfo, res *policy.Result) error {
	allows := 0
	vs := res.Verdicts
	if len(vs) == 0 && res.Decisive != nil {
		vs = []policy.Verdict{*res.Decisive}
	}
	for i := range vs {
		v := &vs[i]
		if v.Decision == profiles.Allow {
			allows++
			if allows > maxAllowRecords {
				continue
			}
		}
		if err := s.record(decisionRecord(ri, v)); err != nil {
			return err
		}
	}
	if allows > maxAllowRecords {
		return s.record(ri.record(audit.EventDecision, audit.PriInfo,
			fmt.Sprintf("ALLOW %d more invocations not recorded one by one", allows-maxAllowRecords)).Set(audit.FieldDecision, "allow"))
	}
	return nil
}

func decisionRecord(ri *reqInfo, v *policy.Verdict) *audit.Record {
	words, line := v.Argv(), v.Invocation()
	if ri.prof.Audit.Script == profiles.AuditScriptSHA256 && v.Decision == profiles.Allow && len(words) > 1 {
		// Scripts are hashed for this agent: an allowed command keeps only
		// its program; denials keep their argv, which a reviewer needs.
		words = words[:1]
		line = words[0] + " ..."
	}
	argv, _ := json.Marshal(words)
	msg := strings.ToUpper(string(v.Decision)) + " " + line
	if v.Decision == profiles.Allow {
		msg += " (" + v.Rule.String() + ")"
	} else {
		msg += " (" + v.Rule.String() + ": " + v.Reason + ")"
	}
	pri := audit.PriInfo
	if v.Decision != profiles.Allow {
		pri = audit.PriWarning
	}
	rec := ri.record(audit.EventDecision, pri, msg).Set(audit.FieldArgv, string(argv)).Set(audit.FieldDecision, string(v.Decision)).
		Set(audit.FieldRule, v.Rule.String()).Set(audit.FieldReason, v.Reason).Set(audit.FieldVia, strings.Join(v.Inv.Via, " > "))
	if v.Deferred {
		rec.Set(audit.FieldReason, v.Reason+" (left to the runtime exec check)")
	}
	return rec
}

// eventStream writes NDJSON events; stdout and stderr come from different
// goroutines.
type eventStream struct {
	mu  sync.Mutex
	w   io.Writer
	rc  *http.ResponseController
	buf bytes.Buffer
}

func newEventStream(w http.ResponseWriter) *eventStream {
	return &eventStream{w: w, rc: http.NewResponseController(w)}
}

// tell sends an event whose loss changes nothing: a client that went
// away has closed the connection, which ends the request's context.
func (e *eventStream) tell(ev api.Event) { _ = e.send(ev) }

func (e *eventStream) send(ev api.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.buf.Reset()
	if err := json.NewEncoder(&e.buf).Encode(ev); err != nil {
		return err
	}
	if _, err := e.w.Write(e.buf.Bytes()); err != nil {
		return err
	}
	return e.rc.Flush()
}

type eventWriter struct {
	s    *eventStream
	kind string
}

func (e *eventStream) writer(kind string) io.Writer { return &eventWriter{s: e, kind: kind} }

func (w *eventWriter) Write(p []byte) (int, error) {
	if err := w.s.send(api.Event{Event: w.kind, Data: p}); err != nil {
		return 0, err
	}
	return len(p), nil
}

func sortAgents(a []api.AgentStatus) {
	sort.Slice(a, func(i, j int) bool { return a[i].Name < a[j].Name })
}
