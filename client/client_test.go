package client_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/client"
)

// TestConnectErrorNamesTheSocketVariable: an unreachable daemon's error
// names the variable that chooses that socket, so an admin whose
// EXECGATE_ADMIN_SOCKET is wrong is not told to fix EXECGATE_SOCKET.
func TestConnectErrorNamesTheSocketVariable(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent.sock")
	t.Setenv(api.EnvAgentSocket, missing)
	t.Setenv(api.EnvAdminSocket, missing)
	for _, tc := range []struct {
		name      string
		c         *client.Client
		want, not string
	}{
		{"agent", &client.Client{}, api.EnvAgentSocket, api.EnvAdminSocket},
		{"admin", client.Admin(), api.EnvAdminSocket, api.EnvAgentSocket + " "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.c.Status(context.Background())
			var ce *client.ConnectError
			if !errors.As(err, &ce) {
				t.Fatalf("Status: %v, want a *ConnectError", err)
			}
			if ce.Socket != missing {
				t.Errorf("Socket = %q, want %q", ce.Socket, missing)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || strings.Contains(msg, tc.not) {
				t.Errorf("error %q: want it to name %s and not %s", msg, tc.want, strings.TrimSpace(tc.not))
			}
		})
	}
}
