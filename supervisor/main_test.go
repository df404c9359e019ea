package supervisor

import (
	"os"
	"testing"

	"github.com/execgate/execgate/supervisor/sandbox"
)

// The sandbox re-executes the test binary as its init stage.
func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	os.Exit(m.Run())
}
