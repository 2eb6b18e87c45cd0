package ca

import (
	"errors"
	"os"
	"runtime"
	"sync"

	"github.com/mtlsctl/mtlsctl/internal/atomicfile"
)

// pendingFile is one file a batch will write into the state directory.
type pendingFile struct {
	path string
	data []byte
	mode os.FileMode
}

// writeBatch writes files into the state directory root, each atomically,
// with one flush for a large batch ([atomicfile.WriteFiles]). Missing
// parent directories are created 0700.
func writeBatch(root string, files []pendingFile) error {
	batch := make([]atomicfile.File, len(files))
	for i, f := range files {
		batch[i] = atomicfile.File{Path: f.path, Data: f.data, Perm: f.mode}
	}
	return atomicfile.WriteFiles(root, batch, dirMode)
}

// syncDir flushes a directory, so that renames, removals and new entries in
// it are durable.
func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

// parallel runs f(0..n-1) on up to GOMAXPROCS workers and returns every
// error, joined, in index order.
func parallel(n int, f func(i int) error) error {
	if n == 0 {
		return nil
	}
	workers := min(runtime.GOMAXPROCS(0), n)
	errs := make([]error, n)
	var next sync.Mutex
	i := 0
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				next.Lock()
				j := i
				i++
				next.Unlock()
				if j >= n {
					return
				}
				errs[j] = f(j)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
