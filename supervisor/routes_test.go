package supervisor

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

// serveAs answers one request on h as uid, the way a socket would.
func serveAs(h http.Handler, uid uint32, method, path string) (int, string) {
	r := httptest.NewRequest(method, path, strings.NewReader(`{}`))
	r = r.WithContext(context.WithValue(r.Context(), peerKey{}, Peer{UID: uid, GID: uid, PID: 1}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

var wildcard = regexp.MustCompile(`\{[^}]*\}`)

// Every route in the table is answered on the socket it is not for: the
// agent socket refuses each admin route (403, whatever the method and
// whatever follows a wildcard) and the admin socket does not serve the
// agents' routes. No second list of paths is kept for either.
func TestRoutesByAudience(t *testing.T) {
	now := time.Now()
	s, _, _ := newTestServer(t, "", &now)
	agent, admin := s.AgentHandler(), s.AdminHandler()
	const agentUID, strangerUID = 4242, 4343
	for _, rt := range s.routes() {
		path := wildcard.ReplaceAllString(rt.path, "x")
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			switch rt.who {
			case forAdmins:
				paths := []string{path}
				if p := refusedPath(rt.path); p != rt.path {
					paths = append(paths, p, p+"x/y/z")
				}
				for _, p := range paths {
					for _, m := range []string{rt.method, http.MethodGet, http.MethodPost, http.MethodDelete} {
						for _, uid := range []uint32{agentUID, strangerUID} {
							if code, body := serveAs(agent, uid, m, p); code != http.StatusForbidden || !strings.Contains(body, "only on the admin socket") {
								t.Errorf("agent socket, uid %d, %s %s: %d %s", uid, m, p, code, body)
							}
						}
					}
				}
				if code, body := serveAs(admin, agentUID, rt.method, path); code != http.StatusForbidden || !strings.Contains(body, "not an execgate admin") {
					t.Errorf("admin socket as the agent: %d %s", code, body)
				}
			case forAgents:
				if code, body := serveAs(admin, 0, rt.method, path); code != http.StatusNotFound {
					t.Errorf("admin socket as root: %d %s", code, body)
				}
				if code, body := serveAs(agent, strangerUID, rt.method, path); code != http.StatusForbidden || !strings.Contains(body, "no execgate profile") {
					t.Errorf("agent socket as a uid without a profile: %d %s", code, body)
				}
			default:
				t.Errorf("route for audience %d", rt.who)
			}
		})
	}
	if code, body := serveAs(agent, agentUID, http.MethodGet, "/v1/nothing"); code != http.StatusNotFound {
		t.Errorf("unknown path on the agent socket: %d %s", code, body)
	}
}
