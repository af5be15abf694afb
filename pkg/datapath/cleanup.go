package datapath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/socklb/socklb/pkg/logfield"
	"go.uber.org/zap"
)

// Cleanup detaches every program socklb attached from pinDir and removes its
// pins, maps included. Every file under links/ is a link, whatever naming
// the agent that pinned it used. It is idempotent.
func Cleanup(pinDir string, log *zap.Logger) error {
	var errs []error
	links, _ := filepath.Glob(filepath.Join(pinDir, linksDir, "*"))
	for _, pin := range links {
		if err := detachAny(pin); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("program detached", zap.String(logfield.Pin, pin))
	}
	entries, err := os.ReadDir(pinDir)
	if errors.Is(err, os.ErrNotExist) {
		return errors.Join(errs...)
	}
	if err != nil {
		return fmt.Errorf("read pin directory %s: %w", pinDir, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		path := filepath.Join(pinDir, e.Name())
		if err := os.Remove(path); err != nil {
			errs = append(errs, fmt.Errorf("unpin %s: %w", path, err))
			continue
		}
		log.Info("map unpinned", zap.String(logfield.Pin, path))
	}
	for _, dir := range []string{filepath.Join(pinDir, linksDir), pinDir} {
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}
