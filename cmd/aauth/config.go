package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Environment variables read by the commands. A flag given on the command line wins
// over its variable, and a variable that is set (even to "") wins over the profile.
const (
	envKey        = "AAUTH_KEY"         // -key
	envID         = "AAUTH_ID"          // -id
	envAgentToken = "AAUTH_AGENT_TOKEN" // -agent-token
	envDev        = "AAUTH_DEV"         // -dev (true/false, 1/0)
	envProfile    = "AAUTH_PROFILE"     // -profile
	envConfig     = "AAUTH_CONFIG"      // the profile file
	envCacheDir   = "AAUTH_CACHE_DIR"   // the token cache folder
	envNoCache    = "AAUTH_NO_CACHE"    // any value but "" or "0": -no-cache
)

// defaultProfile is the profile used when neither -profile nor AAUTH_PROFILE names one;
// unlike a named profile it may be absent.
const defaultProfile = "default"

// profile is one entry of the profile file: what -key, -id, -agent-token and -dev
// default to. Relative paths are relative to the profile file's folder; "~/" is the
// home folder.
type profile struct {
	Key        string `json:"key,omitempty"`
	ID         string `json:"id,omitempty"`
	AgentToken string `json:"agent_token,omitempty"`
	Dev        *bool  `json:"dev,omitempty"`
}

// profileFile is the profile file: {"profiles": {"default": {…}, "demo": {…}}}.
type profileFile struct {
	Profiles map[string]profile `json:"profiles"`
}

// configPath is the profile file: $AAUTH_CONFIG, else aauth/config.json in the user's
// config folder ($XDG_CONFIG_HOME, usually ~/.config, on Linux).
func configPath() (string, error) {
	if p := os.Getenv(envConfig); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "aauth", "config.json"), nil
}

// loadProfile reads the named profile ("" means AAUTH_PROFILE, else "default"). A
// missing file or a missing "default" profile is no profile; a missing named profile or
// a malformed file is an error.
func loadProfile(name string) (profile, error) {
	if name == "" {
		name = os.Getenv(envProfile)
	}
	named := name != ""
	if !named {
		name = defaultProfile
	}
	path, err := configPath()
	if err != nil {
		if named {
			return profile{}, fmt.Errorf("profile %q: %w", name, err)
		}
		return profile{}, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !named {
		return profile{}, nil
	}
	if err != nil {
		return profile{}, fmt.Errorf("profile %q: %w", name, err)
	}
	var f profileFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return profile{}, fmt.Errorf("%s: %w", path, err)
	}
	p, ok := f.Profiles[name]
	if !ok {
		if named {
			return profile{}, fmt.Errorf("%s has no profile %q", path, name)
		}
		return profile{}, nil
	}
	base := filepath.Dir(path)
	p.Key, p.AgentToken = profilePath(base, p.Key), profilePath(base, p.AgentToken)
	return p, nil
}

// profilePath resolves a path of the profile file: "~/" is the home folder, a relative
// path is relative to the file's folder.
func profilePath(base, p string) string {
	switch {
	case p == "":
		return ""
	case strings.HasPrefix(p, "~/"):
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[2:])
		}
	case !filepath.IsAbs(p):
		return filepath.Join(base, p)
	}
	return p
}

// credFlags are the flags that the environment and the profile default: -key, -id,
// -agent-token, -dev, and -profile, which picks the profile.
type credFlags struct {
	key, id, agentToken string
	dev                 bool
	profile             string
}

// add registers the flags; withToken and withDev say which of -agent-token and -dev the
// command has.
func (c *credFlags) add(fs *flag.FlagSet, keyHelp, idHelp string, withToken, withDev bool) {
	fs.StringVar(&c.key, "key", "", keyHelp+" (default $"+envKey+", else the profile's key)")
	if idHelp != "" {
		fs.StringVar(&c.id, "id", "", idHelp+" (default $"+envID+", else the profile's id)")
	}
	if withToken {
		fs.StringVar(&c.agentToken, "agent-token", "", "file holding an agent token for the jwt scheme (default $"+envAgentToken+")")
	}
	if withDev {
		fs.BoolVar(&c.dev, "dev", false, "allow http:// and loopback resource and auth server identifiers, local demos only (default $"+envDev+")")
	}
	fs.StringVar(&c.profile, "profile", "", "profile of the profile file to use (default $"+envProfile+", else \"default\")")
}

// resolve fills in what the command line left out: from the environment, else from the
// profile. -id and -agent-token are one setting: the first layer that sets either one
// decides both, so a profile's id never joins an -agent-token given on the command line.
// An empty flag (-id "") counts as given: it turns the profile's value off.
func (c *credFlags) resolve(fs *flag.FlagSet) error {
	p, err := loadProfile(c.profile)
	if err != nil {
		return err
	}
	given := func(name string) bool { return fs.Lookup(name) != nil && flagSet(fs, name) }
	env := func(name string) (string, bool) { return os.LookupEnv(name) }
	if !given("key") {
		if v, ok := env(envKey); ok {
			c.key = v
		} else {
			c.key = p.Key
		}
	}
	hasID, hasTok := fs.Lookup("id") != nil, fs.Lookup("agent-token") != nil
	if !given("id") && !given("agent-token") {
		vid, okID := env(envID)
		vtok, okTok := env(envAgentToken)
		okID, okTok = okID && hasID, okTok && hasTok
		switch {
		case okID || okTok:
			c.id, c.agentToken = pick(hasID, vid, okID), pick(hasTok, vtok, okTok)
		default:
			c.id, c.agentToken = pick(hasID, p.ID, true), pick(hasTok, p.AgentToken, true)
		}
	}
	if fs.Lookup("dev") != nil && !given("dev") {
		if v, ok := env(envDev); ok && v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%s=%q is not a boolean (true, false, 1, 0)", envDev, v)
			}
			c.dev = b
		} else if p.Dev != nil {
			c.dev = *p.Dev
		}
	}
	return nil
}

// pick returns v when the command has the flag and the layer set it.
func pick(has bool, v string, set bool) string {
	if has && set {
		return v
	}
	return ""
}
