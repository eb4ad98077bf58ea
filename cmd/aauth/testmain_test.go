package main

import (
	"os"
	"testing"
)

// TestMain keeps the tests off the user's own files and settings: the config and cache
// folders are temporary, the AAUTH_* variables of the user's shell are cleared, and the
// on-disk token cache is off (AAUTH_NO_CACHE) except in the tests that turn it on, so
// each test's token requests are its own.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "aauth-cli-test-")
	if err != nil {
		panic(err)
	}
	for _, v := range []string{envKey, envID, envAgentToken, envDev, envProfile, envConfig, envCacheDir, envDelegateSecret} {
		os.Unsetenv(v)
	}
	for k, v := range map[string]string{"XDG_CONFIG_HOME": dir + "/config", "XDG_CACHE_HOME": dir + "/cache", envNoCache: "1"} {
		if err := os.Setenv(k, v); err != nil {
			panic(err)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
