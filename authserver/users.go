package authserver

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// User is a built-in account that can log in on the consent pages.
type User struct {
	// Name is the login name; it becomes the sub of the tokens the user approves.
	Name string `json:"name"`

	// Hash is the bcrypt hash of the password ($2a$ or $2b$, as printed by
	// `caddy hash-password`).
	Hash string `json:"hash"`
}

const maxUserNameLen = 64

// checkUserName checks a login name: 1–64 printable characters, no white space.
func checkUserName(name string) error {
	if name == "" {
		return errors.New("user name is empty")
	}
	if utf8.RuneCountInString(name) > maxUserNameLen || !utf8.ValidString(name) {
		return fmt.Errorf("user name is longer than %d characters or not UTF-8", maxUserNameLen)
	}
	for _, r := range name {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("user name %q contains white space or a control character", name)
		}
	}
	return nil
}

// checkBcryptHash accepts a bcrypt hash as printed by `caddy hash-password` ($2a$ or
// $2b$; $2y$ is the same algorithm).
func checkBcryptHash(hash string) error {
	if !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") && !strings.HasPrefix(hash, "$2y$") {
		return errors.New("password hash is not a bcrypt hash ($2a$/$2b$; make one with `caddy hash-password`)")
	}
	if _, err := bcrypt.Cost([]byte(hash)); err != nil {
		return fmt.Errorf("password hash is not a valid bcrypt hash: %v", err)
	}
	return nil
}

// checkUsers validates a user list: names, hashes, no name twice.
func checkUsers(users []User) error {
	seen := map[string]bool{}
	for _, u := range users {
		if err := checkUserName(u.Name); err != nil {
			return err
		}
		if err := checkBcryptHash(u.Hash); err != nil {
			return fmt.Errorf("user %s: %v", u.Name, err)
		}
		if seen[u.Name] {
			return fmt.Errorf("user %s specified more than once", u.Name)
		}
		seen[u.Name] = true
	}
	return nil
}

// authenticate checks a name and password against the built-in users. It spends the
// same bcrypt work whether or not the name exists: for an unknown name the password is
// compared against another user's hash and the result discarded.
func authenticate(users []User, name, password string) (string, bool) {
	if len(users) == 0 || len(password) > 72*4 {
		return "", false
	}
	var found *User
	for i := range users {
		// constant-time name comparison; every entry is visited
		if subtle.ConstantTimeCompare([]byte(users[i].Name), []byte(name)) == 1 {
			found = &users[i]
		}
	}
	hash := users[0].Hash
	if found != nil {
		hash = found.Hash
	}
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
	if found == nil || err != nil {
		return "", false
	}
	return found.Name, true
}
