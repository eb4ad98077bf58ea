//go:build unix

package state

// SetOnceLogMax sets the compaction threshold of the Once logs and returns the function
// that restores it.
func SetOnceLogMax(n int64) (restore func()) {
	old := onceLogMax
	onceLogMax = n
	return func() { onceLogMax = old }
}

// OnceLogName is the log (relative to the storage root) that holds key's mark.
func OnceLogName(key string) string {
	return onceLogName(key)
}
