//go:build race

package sandbox

// initExtraEnv: a race-enabled init would otherwise sleep a second at exit
// (ThreadSanitizer's atexit_sleep_ms).
var initExtraEnv = []string{"GORACE=atexit_sleep_ms=0"}
