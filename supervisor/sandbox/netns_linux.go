package sandbox

import (
	"os"

	"github.com/execgate/execgate/supervisor/sandbox/netcapture"
)

// newEmptyNetns creates a network namespace holding only a loopback that is
// down, and returns an fd that keeps it alive. Runs setns into it from the
// init stage: for network.mode = "none" one per agent, which is much
// cheaper than creating (and, asynchronously, destroying) one per run.
func newEmptyNetns() (*os.File, error) { return netcapture.NewNetns() }
