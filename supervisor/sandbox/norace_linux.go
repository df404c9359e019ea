//go:build !race

package sandbox

var initExtraEnv []string
