package main

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// cpioWriter writes an initramfs: the kernel's "newc" cpio format,
// uncompressed (the guest unpacks it faster than it could gunzip it under
// emulation). Parent directories are added once, before what they hold.
type cpioWriter struct {
	w    *bufio.Writer
	ino  uint32
	dirs map[string]bool
}

func newCpioWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<20), ino: 1, dirs: map[string]bool{"": true, ".": true, "/": true}}
}

const (
	cpioDir     = 0o040000
	cpioFile    = 0o100000
	cpioSymlink = 0o120000
)

// header writes one entry's header and name (name without a leading slash).
func (c *cpioWriter) header(name string, mode uint32, size int) error {
	c.ino++
	nlink := 1
	if mode&cpioDir != 0 {
		nlink = 2
	}
	_, err := fmt.Fprintf(c.w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	if err != nil {
		return err
	}
	if _, err := c.w.WriteString(name + "\x00"); err != nil {
		return err
	}
	return c.pad(110 + len(name) + 1)
}

// pad writes zeros up to the next multiple of four of n.
func (c *cpioWriter) pad(n int) error {
	_, err := c.w.Write(make([]byte, (4-n%4)%4))
	return err
}

// mkdirAll adds dir and its missing parents.
func (c *cpioWriter) mkdirAll(dir string) error {
	dir = strings.Trim(dir, "/")
	if c.dirs[dir] {
		return nil
	}
	if err := c.mkdirAll(path.Dir(dir)); err != nil {
		return err
	}
	c.dirs[dir] = true
	return c.header(dir, cpioDir|0o755, 0)
}

// addBytes adds a regular file with the given content and permission bits.
func (c *cpioWriter) addBytes(name string, data []byte, perm fs.FileMode) error {
	name = strings.Trim(name, "/")
	if err := c.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	if err := c.header(name, cpioFile|uint32(perm.Perm()), len(data)); err != nil {
		return err
	}
	if _, err := c.w.Write(data); err != nil {
		return err
	}
	return c.pad(len(data))
}

// addFile adds the host file src as name, keeping its permission bits and
// following symlinks.
func (c *cpioWriter) addFile(name, src string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("initramfs: read %s: %w", src, err)
	}
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("initramfs: stat %s: %w", src, err)
	}
	return c.addBytes(name, data, st.Mode())
}

// addSymlink adds name pointing at target.
func (c *cpioWriter) addSymlink(name, target string) error {
	name = strings.Trim(name, "/")
	if err := c.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	if err := c.header(name, cpioSymlink|0o777, len(target)); err != nil {
		return err
	}
	if _, err := c.w.WriteString(target); err != nil {
		return err
	}
	return c.pad(len(target))
}

// close writes the trailer and flushes.
func (c *cpioWriter) close() error {
	if err := c.header("TRAILER!!!", 0, 0); err != nil {
		return err
	}
	return c.w.Flush()
}
