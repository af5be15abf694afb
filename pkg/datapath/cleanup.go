package datapath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/pkg/logfield"
)

// Cleanup detaches every program socklb attached from pinDir and removes its
// pins, maps included. It removes only what socklb makes: its maps' pins, and
// under links/ the links and filter markers its attach kinds name. A
// directory holding anything else is refused, listing what, unless also
// names those entries. It refuses while an agent holds the directory: the
// agent's own handles would keep every program attached. It is idempotent.
func Cleanup(pinDir string, also []string, log *zap.Logger) error {
	if _, err := os.Stat(pinDir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if !isBPFFS(pinDir) {
		return fmt.Errorf("clean up %s: it is not on a bpffs, so socklb never pinned anything there", pinDir)
	}
	lock, err := LockPinDir(pinDir)
	if errors.Is(err, ErrPinDirLocked) {
		return fmt.Errorf("clean up %s: %w; stop the agent first", pinDir, err)
	}
	if err != nil {
		return err
	}
	defer lock.Unlock()
	maps, links, err := cleanupPlan(pinDir, also)
	if err != nil {
		return err
	}
	var errs []error
	for _, pin := range links {
		if err := detachAny(pin); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("program detached", zap.String(logfield.Pin, pin))
	}
	for _, path := range maps {
		if err := os.Remove(path); err != nil {
			errs = append(errs, fmt.Errorf("unpin %s: %w", path, err))
			continue
		}
		log.Info("pin removed", zap.String(logfield.Pin, path))
	}
	for _, dir := range []string{filepath.Join(pinDir, linksDir), pinDir} {
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// cleanupPlan lists what Cleanup removes: pins at the top, and entries of
// links/. Anything socklb did not make, and also does not name, is an error.
func cleanupPlan(pinDir string, also []string) (pins, links []string, err error) {
	spec, err := lbmap.LoadSpec()
	if err != nil {
		return nil, nil, err
	}
	var foreign []string
	entries, err := os.ReadDir(pinDir)
	if err != nil {
		return nil, nil, fmt.Errorf("read pin directory %s: %w", pinDir, err)
	}
	for _, e := range entries {
		_, ours := spec.Maps[e.Name()]
		switch {
		case e.Name() == linksDir && e.IsDir():
		case ours || slices.Contains(also, e.Name()):
			pins = append(pins, filepath.Join(pinDir, e.Name()))
		default:
			foreign = append(foreign, e.Name())
		}
	}
	entries, err = os.ReadDir(filepath.Join(pinDir, linksDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("read %s: %w", filepath.Join(pinDir, linksDir), err)
	}
	for _, e := range entries {
		if isOurLinkName(e.Name()) || slices.Contains(also, filepath.Join(linksDir, e.Name())) {
			links = append(links, filepath.Join(pinDir, linksDir, e.Name()))
		} else {
			foreign = append(foreign, filepath.Join(linksDir, e.Name()))
		}
	}
	if len(foreign) > 0 {
		return nil, nil, fmt.Errorf("clean up %s: it holds what socklb did not make (%s): remove those yourself, or name them with --also to have them removed too",
			pinDir, strings.Join(foreign, ", "))
	}
	return pins, links, nil
}

// isOurLinkName says whether name is one an attach kind gives a pin, now or
// in an earlier socklb (the bare socket hook names).
func isOurLinkName(name string) bool {
	for _, k := range []AttachKind{AttachCgroup, AttachXDP, AttachTCEgress, AttachTCIngress} {
		if strings.HasPrefix(name, k.String()+"-") {
			return true
		}
	}
	return slices.Contains(socketPrograms, name)
}
