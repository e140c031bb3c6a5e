package storage

import (
	"fmt"
	"slices"
	"strings"
)

// Handlers for cluster, domain, account, alias and queue commands. Each
// handler checks everything first and writes only once it cannot fail, so
// a failed command changes nothing.

func (t *tx) settingSet() (any, error) {
	var p SettingSet
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	if err := normID("setting key", p.Key); err != nil {
		return nil, err
	}
	if p.Value == nil {
		t.del(settingKey(p.Key))
	} else {
		t.set(settingKey(p.Key), p.Value)
	}
	return nil, nil
}

func (t *tx) tokenAdd() (any, error) {
	var p JoinToken
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	if err := normID("token id", p.ID); err != nil {
		return nil, err
	}
	if t.exists(tokenKey(p.ID)) {
		return nil, fmt.Errorf("token %q: %w", p.ID, ErrExists)
	}
	if p.Created.IsZero() {
		p.Created = t.cmd.Time
	}
	t.setJSON(tokenKey(p.ID), p)
	return nil, nil
}

func (t *tx) tokenRevoke() (any, error) {
	var p TokenRevoke
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	var tok JoinToken
	if !t.getJSON(tokenKey(p.ID), &tok) {
		return nil, fmt.Errorf("token %q: %w", p.ID, ErrNotFound)
	}
	tok.Revoked = true
	t.setJSON(tokenKey(p.ID), tok)
	return nil, nil
}

func (t *tx) domainAdd() (any, error) {
	var p DomainAdd
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	name, err := normDomain(p.Name)
	if err != nil {
		return nil, err
	}
	if t.exists(domainKey(name)) {
		return nil, fmt.Errorf("domain %q: %w", name, ErrExists)
	}
	t.setJSON(domainKey(name), Domain{Name: name, Created: t.cmd.Time})
	return nil, nil
}

func (t *tx) domainRemove() (any, error) {
	var p DomainRemove
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	name, err := normDomain(p.Name)
	if err != nil {
		return nil, err
	}
	if !t.exists(domainKey(name)) {
		return nil, fmt.Errorf("domain %q: %w", name, ErrNotFound)
	}
	if t.hasPrefix(accountDomainPrefix(name)) || t.hasPrefix(aliasDomainPrefix(name)) {
		return nil, fmt.Errorf("domain %q has accounts or aliases: %w", name, ErrNotEmpty)
	}
	t.del(domainKey(name))
	return nil, nil
}

// account reads an account by normalised address.
func (t *tx) account(addr string) (Account, error) {
	var a Account
	if !t.getJSON(accountKey(addr), &a) {
		return a, fmt.Errorf("account %q: %w", addr, ErrNotFound)
	}
	return a, nil
}

// lookupAccount normalises addr and reads the account.
func (t *tx) lookupAccount(addr string) (Account, error) {
	a, err := normAddr(addr)
	if err != nil {
		return Account{}, err
	}
	return t.account(a)
}

var defaultMailboxes = []struct{ name, use string }{
	{inbox, ""},
	{"Sent", `\Sent`},
	{"Drafts", `\Drafts`},
	{"Trash", `\Trash`},
	{"Junk", `\Junk`},
	{"Archive", `\Archive`},
}

func (t *tx) accountAdd() (any, error) {
	var p AccountAdd
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	addr, err := normAddr(p.Address)
	if err != nil {
		return nil, err
	}
	if p.QuotaBytes < 0 {
		return nil, fmt.Errorf("account %q: negative quota: %w", addr, ErrInvalid)
	}
	_, domain := splitAddr(addr)
	if !t.exists(domainKey(domain)) {
		return nil, fmt.Errorf("account %q: domain %q: %w", addr, domain, ErrNotFound)
	}
	if t.exists(accountKey(addr)) {
		return nil, fmt.Errorf("account %q: %w", addr, ErrExists)
	}
	if t.exists(aliasKey(addr)) {
		return nil, fmt.Errorf("account %q: is an alias: %w", addr, ErrExists)
	}
	t.setJSON(accountKey(addr), Account{
		Address:      addr,
		PasswordHash: p.PasswordHash,
		QuotaBytes:   p.QuotaBytes,
		Created:      t.cmd.Time,
	})
	for _, mb := range defaultMailboxes {
		t.newMailbox(addr, mb.name, mb.use, true)
	}
	return nil, nil
}

func (t *tx) accountPassword() (any, error) {
	var p AccountPassword
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	a, err := t.lookupAccount(p.Address)
	if err != nil {
		return nil, err
	}
	a.PasswordHash = p.PasswordHash
	t.setJSON(accountKey(a.Address), a)
	return nil, nil
}

func (t *tx) accountQuota() (any, error) {
	var p AccountQuota
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	a, err := t.lookupAccount(p.Address)
	if err != nil {
		return nil, err
	}
	if p.QuotaBytes < 0 {
		return nil, fmt.Errorf("account %q: negative quota: %w", a.Address, ErrInvalid)
	}
	a.QuotaBytes = p.QuotaBytes
	t.setJSON(accountKey(a.Address), a)
	return nil, nil
}

func (t *tx) accountRemove() (any, error) {
	var p AccountRemove
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	a, err := t.lookupAccount(p.Address)
	if err != nil {
		return nil, err
	}
	for _, kv := range t.scan(mailboxNamePrefix(a.Address)) {
		mb, ok := t.mailboxByID(decodeID(kv.v))
		if !ok {
			panic(fmt.Sprintf("storage: apply index %d: mailbox index %q points nowhere", t.index, kv.k))
		}
		t.dropMailbox(mb)
	}
	for _, kv := range t.scan(aliasDomainPrefix("")) {
		var al Alias
		t.unmarshal(kv.v, &al)
		i := slices.Index(al.Targets, a.Address)
		if i < 0 {
			continue
		}
		if len(al.Targets) == 1 {
			t.del(kv.k)
			continue
		}
		al.Targets = slices.Delete(al.Targets, i, i+1)
		t.setJSON(kv.k, al)
	}
	t.del(accountKey(a.Address))
	return nil, nil
}

func (t *tx) appPasswordAdd() (any, error) {
	var p AppPasswordAdd
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	a, err := t.lookupAccount(p.Address)
	if err != nil {
		return nil, err
	}
	if err := normID("app password name", p.Name); err != nil {
		return nil, err
	}
	if p.PasswordHash == "" {
		return nil, fmt.Errorf("app password %q: empty hash: %w", p.Name, ErrInvalid)
	}
	if slices.ContainsFunc(a.AppPasswords, func(ap AppPassword) bool { return ap.Name == p.Name }) {
		return nil, fmt.Errorf("app password %q of %q: %w", p.Name, a.Address, ErrExists)
	}
	a.AppPasswords = append(a.AppPasswords, AppPassword{Name: p.Name, Hash: p.PasswordHash, Created: t.cmd.Time})
	slices.SortFunc(a.AppPasswords, func(x, y AppPassword) int { return strings.Compare(x.Name, y.Name) })
	t.setJSON(accountKey(a.Address), a)
	return nil, nil
}

func (t *tx) appPasswordRemove() (any, error) {
	var p AppPasswordRemove
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	a, err := t.lookupAccount(p.Address)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(a.AppPasswords, func(ap AppPassword) bool { return ap.Name == p.Name })
	if i < 0 {
		return nil, fmt.Errorf("app password %q of %q: %w", p.Name, a.Address, ErrNotFound)
	}
	a.AppPasswords = slices.Delete(a.AppPasswords, i, i+1)
	if len(a.AppPasswords) == 0 {
		a.AppPasswords = nil
	}
	t.setJSON(accountKey(a.Address), a)
	return nil, nil
}

func (t *tx) aliasAdd() (any, error) {
	var p AliasAdd
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	addr, err := normAddr(p.Address)
	if err != nil {
		return nil, err
	}
	_, domain := splitAddr(addr)
	if !t.exists(domainKey(domain)) {
		return nil, fmt.Errorf("alias %q: domain %q: %w", addr, domain, ErrNotFound)
	}
	if t.exists(accountKey(addr)) {
		return nil, fmt.Errorf("alias %q: is an account: %w", addr, ErrExists)
	}
	if t.exists(aliasKey(addr)) {
		return nil, fmt.Errorf("alias %q: %w", addr, ErrExists)
	}
	if len(p.Targets) == 0 {
		return nil, fmt.Errorf("alias %q: no targets: %w", addr, ErrInvalid)
	}
	targets := make([]string, 0, len(p.Targets))
	for _, tg := range p.Targets {
		a, err := t.lookupAccount(tg)
		if err != nil {
			return nil, fmt.Errorf("alias %q target: %w", addr, err)
		}
		targets = append(targets, a.Address)
	}
	slices.Sort(targets)
	t.setJSON(aliasKey(addr), Alias{Address: addr, Targets: slices.Compact(targets)})
	return nil, nil
}

func (t *tx) aliasRemove() (any, error) {
	var p AliasRemove
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	addr, err := normAddr(p.Address)
	if err != nil {
		return nil, err
	}
	if !t.exists(aliasKey(addr)) {
		return nil, fmt.Errorf("alias %q: %w", addr, ErrNotFound)
	}
	t.del(aliasKey(addr))
	return nil, nil
}

// checkQueueEntry validates q and fills defaults from the command.
func (t *tx) checkQueueEntry(q *QueueEntry) error {
	if err := normID("queue id", q.ID); err != nil {
		return err
	}
	if q.Blob.IsZero() {
		return fmt.Errorf("queue entry %q: no blob: %w", q.ID, ErrInvalid)
	}
	if q.Size < 0 {
		return fmt.Errorf("queue entry %q: negative size: %w", q.ID, ErrInvalid)
	}
	if q.Created.IsZero() {
		q.Created = t.cmd.Time
	}
	if q.NextAttempt.IsZero() {
		q.NextAttempt = t.cmd.Time
	}
	for i := range q.Recipients {
		if q.Recipients[i].Status == "" {
			q.Recipients[i].Status = "pending"
		}
	}
	return nil
}

func (t *tx) queueAdd() (any, error) {
	var q QueueEntry
	if err := t.decode(&q); err != nil {
		return nil, err
	}
	if err := t.checkQueueEntry(&q); err != nil {
		return nil, err
	}
	if t.exists(queueKey(q.ID)) {
		return nil, fmt.Errorf("queue entry %q: %w", q.ID, ErrExists)
	}
	t.setJSON(queueKey(q.ID), q)
	t.incref(q.Blob)
	return nil, nil
}

func (t *tx) queueUpdate() (any, error) {
	var q QueueEntry
	if err := t.decode(&q); err != nil {
		return nil, err
	}
	var old QueueEntry
	if !t.getJSON(queueKey(q.ID), &old) {
		return nil, fmt.Errorf("queue entry %q: %w", q.ID, ErrNotFound)
	}
	if q.Created.IsZero() {
		q.Created = old.Created
	}
	if err := t.checkQueueEntry(&q); err != nil {
		return nil, err
	}
	t.setJSON(queueKey(q.ID), q)
	if old.Blob != q.Blob {
		t.incref(q.Blob)
		t.decref(old.Blob)
	}
	return nil, nil
}

func (t *tx) queueRemove() (any, error) {
	var p QueueRemove
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	var old QueueEntry
	if !t.getJSON(queueKey(p.ID), &old) {
		return nil, fmt.Errorf("queue entry %q: %w", p.ID, ErrNotFound)
	}
	t.del(queueKey(p.ID))
	t.decref(old.Blob)
	return nil, nil
}
