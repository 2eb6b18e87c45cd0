//go:build !linux

package atomicfile

const syncfsSupported = false

// syncFS is never called where syncfs(2) does not exist: batches fall back
// to an fsync per file and directory.
func syncFS(dir string) error { return SyncDir(dir) }
