package keystore

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// TestRotationSchedule: the new key is published at once and signs only after the
// publish delay; the old key signs until then and stays published until its last token
// expired (plus skew), then stays in the keyring for Keep.
func TestRotationSchedule(t *testing.T) {
	st := &certmagic.FileStorage{Path: t.TempDir()}
	c := newClock()
	p := Policy{Lifetime: time.Hour, PublishDelay: 10 * time.Minute, Keep: 24 * time.Hour}
	k := keyAt(st, LayoutOf(RoleIssuer, "https://as.example"), c, p)
	old := signerKID(t, k)
	var events, older []Rotation
	k.users[&user{policy: p, seq: 1, onRotate: func(r Rotation) { older = append(older, r) }}] = struct{}{}
	k.users[&user{policy: p, seq: 2, onRotate: func(r Rotation) { events = append(events, r) }}] = struct{}{}
	rot, err := k.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rot.OldKID != old || rot.NewKID == old || !rot.Activates.Equal(c.now().Add(p.PublishDelay)) || len(events) != 1 || events[0] != rot || len(older) != 0 {
		t.Fatalf("rotation %+v, events %+v, want one, reported to the newest user only (older got %d)", rot, events, len(older))
	}
	both := []string{old, rot.NewKID}
	slices.Sort(both)
	if got := kids(t, k); !slices.Equal(got, both) {
		t.Fatalf("right after rotation the JWKS has %v, want both %v", got, both)
	}
	if got := signerKID(t, k); got != old {
		t.Fatal("the new key signs before its publish delay")
	}
	states(t, k, map[string]string{old: StateActive, rot.NewKID: StateNext})

	c.add(p.PublishDelay - time.Second)
	if got := signerKID(t, k); got != old {
		t.Fatal("the new key signs before its publish delay")
	}
	c.add(time.Second)
	if got := signerKID(t, k); got != rot.NewKID {
		t.Fatalf("the new key does not sign after the publish delay: %s", got)
	}
	states(t, k, map[string]string{old: StateRetired, rot.NewKID: StateActive})

	// The old key's last token was signed just before the new key activated.
	c.add(p.Lifetime + ClockSkew - time.Second)
	if got := kids(t, k); !slices.Equal(got, both) {
		t.Fatalf("the old key left the JWKS before its last token expired: %v", got)
	}
	c.add(time.Second)
	if got := kids(t, k); !slices.Equal(got, []string{rot.NewKID}) {
		t.Fatalf("the old key is still published after its last token expired: %v", got)
	}
	if pk, _ := k.Lookup(context.Background(), old); pk == nil {
		t.Fatal("a key within Keep must stay in the keyring")
	}
	c.add(p.Keep)
	if _, err := k.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if pk, _ := k.Lookup(context.Background(), old); pk != nil {
		t.Fatal("a key past Keep must be pruned at the next rotation")
	}
}

func states(t *testing.T, k *Key, want map[string]string) {
	t.Helper()
	infos, err := k.Infos(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		if in.State != want[in.KID] || in.Alg != "EdDSA" || in.Owner != "https://as.example" || in.Role != RoleIssuer {
			t.Errorf("key %s: %+v, want state %s", in.KID, in, want[in.KID])
		}
	}
}

// TestRotationSeenBySharedStorage: instance B sees A's rotation after its re-read
// period without a reload, publishes the new key before it signs and signs with it.
func TestRotationSeenBySharedStorage(t *testing.T) {
	dir := t.TempDir()
	c := newClock()
	p := Policy{Lifetime: time.Minute, PublishDelay: 40 * time.Second}
	l := LayoutOf(RoleResource, "https://api.example")
	a := keyAt(&certmagic.FileStorage{Path: dir}, l, c, p)
	b := keyAt(&certmagic.FileStorage{Path: dir}, l, c, p)
	old := signerKID(t, a)
	if signerKID(t, b) != old {
		t.Fatal("instances disagree")
	}
	rot, err := a.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := kids(t, b); slices.Contains(got, rot.NewKID) {
		t.Fatal("B re-read its keyring before the re-read period (test assumption)")
	}
	c.add(p.reread())
	if got := kids(t, b); !slices.Contains(got, rot.NewKID) || !slices.Contains(got, old) {
		t.Fatalf("B does not publish A's new key within the re-read period: %v", got)
	}
	if p.reread() >= p.PublishDelay || signerKID(t, b) != old {
		t.Fatal("B must publish the new key before it signs")
	}
	c.add(p.PublishDelay)
	if signerKID(t, b) != rot.NewKID {
		t.Fatal("B does not sign with the new key after activation")
	}
}

// TestConcurrentRotationsLoseNothing: rotations by two instances at once are
// serialised by the storage lock; each sees the other's key.
func TestConcurrentRotationsLoseNothing(t *testing.T) {
	dir := t.TempDir()
	c := newClock()
	p := Policy{Lifetime: time.Hour, PublishDelay: time.Minute}
	l := LayoutOf(RoleIssuer, "https://as.example")
	insts := []*Key{keyAt(&certmagic.FileStorage{Path: dir}, l, c, p), keyAt(&certmagic.FileStorage{Path: dir}, l, c, p)}
	signerKID(t, insts[0])
	var wg sync.WaitGroup
	for _, k := range insts {
		wg.Go(func() {
			for range 3 {
				if _, err := k.Rotate(context.Background()); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	fresh := keyAt(&certmagic.FileStorage{Path: dir}, l, c, p)
	infos, err := fresh.Infos(context.Background())
	if err != nil || len(infos) != 7 {
		t.Fatalf("want the first key and 6 rotations, got %d keys (%v)", len(infos), err)
	}
	for _, in := range infos[:6] {
		if in.Retires.IsZero() {
			t.Fatalf("a key followed by another has no retire time: %+v", in)
		}
	}
}

// TestIntervalRotatesOncePerCluster: the interval rotation re-checks under the lock, so
// two instances that both find it due rotate once; current starts it in the background.
func TestIntervalRotatesOncePerCluster(t *testing.T) {
	dir := t.TempDir()
	c := newClock()
	p := Policy{Lifetime: time.Minute, PublishDelay: time.Minute, Interval: time.Hour, Keep: 24 * time.Hour}
	l := LayoutOf(RoleIssuer, "https://as.example")
	a := keyAt(&certmagic.FileStorage{Path: dir}, l, c, p)
	b := keyAt(&certmagic.FileStorage{Path: dir}, l, c, p)
	signerKID(t, a)
	if _, rotated, err := a.rotate(context.Background(), p.Interval); rotated || err != nil {
		t.Fatalf("rotated before the interval: %v", err)
	}
	c.add(p.Interval)
	var wg sync.WaitGroup
	var n sync.Map
	for _, k := range []*Key{a, b} {
		wg.Go(func() {
			_, rotated, err := k.rotate(context.Background(), p.Interval)
			if err != nil {
				t.Error(err)
			}
			n.Store(k, rotated)
		})
	}
	wg.Wait()
	ra, _ := n.Load(a)
	rb, _ := n.Load(b)
	if ra == rb {
		t.Fatalf("want exactly one rotation, A %v B %v", ra, rb)
	}
	if infos, _ := keyAt(&certmagic.FileStorage{Path: dir}, l, c, p).Infos(context.Background()); len(infos) != 2 {
		t.Fatalf("want 2 keys, got %d", len(infos))
	}
	// Due again one interval after the new key activated: a signature starts it.
	c.add(p.PublishDelay + p.Interval)
	signerKID(t, a)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if infos, _ := keyAt(&certmagic.FileStorage{Path: dir}, l, c, p).Infos(context.Background()); len(infos) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a due interval rotation did not start on use")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRegistrySharesAndReleases(t *testing.T) {
	st := &certmagic.FileStorage{Path: t.TempDir()}
	l := LayoutOf(RoleResource, "https://api.example")
	k1, rel1 := Acquire(st, l, "", Policy{Lifetime: time.Minute, Interval: 2 * time.Hour}, nil)
	k2, rel2 := Acquire(&certmagic.FileStorage{Path: st.Path}, l, "", Policy{Lifetime: time.Hour, PublishDelay: time.Second, Interval: time.Hour}, nil)
	if k1 != k2 || len(Registered()) != 1 {
		t.Fatal("one keyring per storage and layout")
	}
	k1.mu.Lock()
	p := k1.policy()
	k1.mu.Unlock()
	if p.Lifetime != time.Hour || p.PublishDelay != DefaultPublishDelay || p.Interval != time.Hour {
		t.Fatalf("merged policy %+v", p)
	}
	other, rel3 := Acquire(&certmagic.FileStorage{Path: t.TempDir()}, l, "", Policy{}, nil)
	if other == k1 {
		t.Fatal("another storage shares the keyring")
	}
	rel1()
	rel1()
	if len(Registered()) != 2 {
		t.Fatal("released with a user left")
	}
	rel2()
	rel3()
	if len(Registered()) != 0 {
		t.Fatal("the registry leaks released keyrings")
	}
}

// TestRegisteredKeyRotatesWhenIdle: a registered keyring with an interval rotates
// without being used, and stops watching once released.
func TestRegisteredKeyRotatesWhenIdle(t *testing.T) {
	st := &certmagic.FileStorage{Path: t.TempDir()}
	l := LayoutOf(RoleIssuer, "https://idle.example")
	k, release := Acquire(st, l, "", Policy{PublishDelay: time.Second, Interval: time.Hour}, nil)
	defer release()
	c := newClock()
	k.mu.Lock()
	k.now = c.now
	k.mu.Unlock()
	signerKID(t, k) // the config's start reads the keyring
	c.add(time.Hour)
	// The watch re-reads every PublishDelay/4 (250 ms) here; well under the 10 s it
	// slept when it started before its first user and read the default policy.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if infos, _ := keyAt(st, l, c, Policy{}).Infos(context.Background()); len(infos) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an idle registered keyring did not rotate when due")
		}
		time.Sleep(50 * time.Millisecond)
	}
	release()
	select {
	case <-k.stop:
	default:
		t.Fatal("released keyring still watched")
	}
}

// autoRunning reports whether an automatic rotation is running.
func (k *Key) autoRunning() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.auto
}

// lockFails is a storage whose lock fails once failing is set, counting the attempts.
type lockFails struct {
	*certmagic.FileStorage
	failing  atomic.Bool
	attempts atomic.Int64
}

func (s *lockFails) Lock(ctx context.Context, name string) error {
	if s.failing.Load() {
		s.attempts.Add(1)
		return errors.New("storage unavailable")
	}
	return s.FileStorage.Lock(ctx, name)
}

// TestFailedIntervalRotationBacksOff: a due rotation that fails is not retried on every
// use, only after a re-read period; the keyring keeps signing with the active key.
func TestFailedIntervalRotationBacksOff(t *testing.T) {
	st := &lockFails{FileStorage: &certmagic.FileStorage{Path: t.TempDir()}}
	c := newClock()
	p := Policy{PublishDelay: time.Minute, Interval: time.Hour}
	k := keyAt(st, LayoutOf(RoleIssuer, "https://as.example"), c, p)
	kid := signerKID(t, k)
	st.failing.Store(true)
	c.add(p.Interval)
	waitAttempts := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for st.attempts.Load() < want || k.autoRunning() {
			if time.Now().After(deadline) {
				t.Fatalf("%d rotation attempts, want %d", st.attempts.Load(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	signerKID(t, k)
	waitAttempts(1)
	for range 20 {
		if signerKID(t, k) != kid {
			t.Fatal("a failed rotation changed the signing key")
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := st.attempts.Load(); n != 1 {
		t.Fatalf("a failed rotation was retried %d times within the re-read period", n-1)
	}
	c.add(p.reread())
	signerKID(t, k)
	waitAttempts(2)
}
