package flags

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	flagd "github.com/open-feature/go-sdk-contrib/providers/flagd/pkg"
	"github.com/open-feature/go-sdk/openfeature"
)

// NewFlagdProvider returns flagd's own OpenFeature provider in its in-process file mode: it
// evaluates flags from a flagd flags file (JSON, https://flagd.dev/schema/v0/flags.json) inside
// this process, with no flagd server, and follows changes to the file. The file uses the same
// "MIGRATION.FLAG" keys as the catalog provider; FlagdFile writes one. It is an alternative to
// Provider for sites that manage flags with flagd; the phase rules and the audit trail then
// live wherever that file is edited, not in the catalog.
func NewFlagdProvider(flagsFile string) (openfeature.FeatureProvider, error) {
	if flagsFile == "" {
		return nil, fmt.Errorf("flagd provider: no flags file given")
	}
	raw, err := os.ReadFile(flagsFile)
	if err != nil {
		return nil, fmt.Errorf("flagd provider: reading flags file: %w", err)
	}
	var doc struct {
		Flags map[string]json.RawMessage `json:"flags"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("flagd provider: flags file %s is not JSON: %w", flagsFile, err)
	}
	if doc.Flags == nil {
		return nil, fmt.Errorf("flagd provider: flags file %s has no \"flags\" object", flagsFile)
	}
	p, err := flagd.NewProvider(flagd.WithFileResolver(), flagd.WithOfflineFilePath(flagsFile))
	if err != nil {
		return nil, fmt.Errorf("flagd provider for %s: %w", flagsFile, err)
	}
	return p, nil
}

// FlagdFile renders migrations' flags as a flagd flags file, one static flag per
// "MIGRATION.FLAG" key: a way to hand the catalog's values to flagd, or to write a test file.
func FlagdFile(migrations map[string]Values) ([]byte, error) {
	type flag struct {
		State          string         `json:"state"`
		Variants       map[string]any `json:"variants"`
		DefaultVariant string         `json:"defaultVariant"`
	}
	out := map[string]flag{}
	names := make([]string, 0, len(migrations))
	for name := range migrations {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		v := migrations[name]
		if name == "" || strings.HasSuffix(name, ".") {
			return nil, fmt.Errorf("flagd file: migration name %q", name)
		}
		for _, f := range Names {
			if _, err := canonical(f, v.get(f)); err != nil {
				return nil, fmt.Errorf("flagd file: migration %s: %w", name, err)
			}
		}
		if err := checkReadSource(name, v); err != nil {
			return nil, fmt.Errorf("flagd file: %w", err)
		}
		static := func(variant string, value any) flag {
			return flag{State: "ENABLED", Variants: map[string]any{variant: value}, DefaultVariant: variant}
		}
		out[name+"."+FlagPhase] = static(v.Phase, v.Phase)
		out[name+"."+FlagReadSource] = static(v.ReadSource, v.ReadSource)
		out[name+"."+FlagShadowReadPercent] = static("p"+formatPercent(v.ShadowReadPercent), v.ShadowReadPercent)
		out[name+"."+FlagWriteBlock] = static(fmt.Sprint(v.WriteBlock), v.WriteBlock)
	}
	return json.MarshalIndent(map[string]any{"$schema": "https://flagd.dev/schema/v0/flags.json", "flags": out}, "", "  ")
}
