package ops

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/raftmail/raftmail/protocol/mailauth"
	"github.com/raftmail/raftmail/storage"
)

// DKIM keys through the admin API. Keys are generated here, by the
// proposer, and carried in the command, so every node stores (and signs
// with) the same keys. Private keys never leave the store through the API.

// DKIM selector states (DKIMSelectorInfo.State).
const (
	DKIMSigning   = "signing"   // new mail is signed with it; published
	DKIMPublished = "published" // stopped signing after a rotation; still in DNS until retired
	DKIMRetired   = "retired"   // key deleted; remove its DNS record
)

// DKIMSelectorInfo is a DKIM selector as listed: never its private key.
type DKIMSelectorInfo struct {
	Selector  string    `json:"selector"`
	Algorithm string    `json:"algorithm"`
	Created   time.Time `json:"created"`
	State     string    `json:"state"`         // DKIMSigning, DKIMPublished or DKIMRetired
	Name      string    `json:"name"`          // <selector>._domainkey.<domain>.
	TXT       string    `json:"txt,omitempty"` // the TXT record to publish; "" once retired
}

// DKIMRotated is the answer to POST /v1/domains/{name}/dkim/rotate.
type DKIMRotated struct {
	New       []string           `json:"new"` // the new signing selectors
	Selectors []DKIMSelectorInfo `json:"selectors"`
}

// DomainAdded is the answer to POST /v1/domains.
type DomainAdded struct {
	Added string   `json:"added"`
	DKIM  []string `json:"dkim_selectors"`
}

// dkimInfos describes a domain's selectors in the order they were added.
func dkimInfos(d storage.Domain) ([]DKIMSelectorInfo, error) {
	out := []DKIMSelectorInfo{}
	for _, s := range d.DKIM {
		info := DKIMSelectorInfo{Selector: s.Selector, Algorithm: s.Algorithm, Created: s.Created,
			Name: s.Selector + "._domainkey." + d.Name + "."}
		switch {
		case s.Retired:
			info.State = DKIMRetired
		case s.Signing:
			info.State = DKIMSigning
		default:
			info.State = DKIMPublished
		}
		if !s.Retired {
			txt, err := mailauth.DKIMKey{Selector: s.Selector, Algorithm: s.Algorithm, PrivateKeyPEM: s.PrivateKeyPEM}.TXTRecord()
			if err != nil {
				return nil, fmt.Errorf("ops: domain %s: %w", d.Name, err)
			}
			info.TXT = txt
		}
		out = append(out, info)
	}
	return out, nil
}

// newDKIMKeys generates a signing pair (ed25519 and RSA) named after today's
// date, with a suffix when a selector of that name exists already (a second
// rotation on one day): selector names are never reused.
func newDKIMKeys(existing []storage.DKIMSelector) ([]storage.DKIMSelector, error) {
	taken := map[string]bool{}
	for _, s := range existing {
		taken[s.Selector] = true
	}
	date := mailauth.NewSelectorBase(time.Now())
	base := date
	for i := 2; taken[base+"e"] || taken[base+"r"]; i++ {
		base = date + "x" + strconv.Itoa(i)
	}
	keys, err := mailauth.GenerateDKIMKeys(base)
	if err != nil {
		return nil, err
	}
	out := make([]storage.DKIMSelector, 0, len(keys))
	for _, k := range keys {
		out = append(out, storage.DKIMSelector{Selector: k.Selector, Algorithm: k.Algorithm, PrivateKeyPEM: k.PrivateKeyPEM})
	}
	return out, nil
}

func selectorNames(sels []storage.DKIMSelector) []string {
	out := make([]string, 0, len(sels))
	for _, s := range sels {
		out = append(out, s.Selector)
	}
	return out
}

// withoutKeys returns domains with their private keys removed, for
// listing.
func withoutKeys(ds []storage.Domain) []storage.Domain {
	for i := range ds {
		for j := range ds[i].DKIM {
			ds[i].DKIM[j].PrivateKeyPEM = nil
		}
	}
	return ds
}

func (a *Admin) dkimList(w http.ResponseWriter, r *http.Request) {
	d, err := a.store.Domain(normAddr(r.PathValue("name")))
	if err != nil {
		a.writeProposeError(w, err)
		return
	}
	infos, err := dkimInfos(d)
	if err != nil {
		a.writeProposeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, infos)
}

func (a *Admin) dkimRotate(w http.ResponseWriter, r *http.Request) {
	d, err := a.store.Domain(normAddr(r.PathValue("name")))
	if err != nil {
		a.writeProposeError(w, err)
		return
	}
	sels, err := newDKIMKeys(d.DKIM)
	if err != nil {
		a.writeProposeError(w, err)
		return
	}
	if _, ok := a.propose(w, r, storage.CmdDKIMRotate, storage.DKIMRotate{Domain: d.Name, New: sels}); !ok {
		return
	}
	// Propose returns once the local store has applied the change.
	if d, err = a.store.Domain(d.Name); err != nil {
		a.writeProposeError(w, err)
		return
	}
	infos, err := dkimInfos(d)
	if err != nil {
		a.writeProposeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, DKIMRotated{New: selectorNames(sels), Selectors: infos})
}

func (a *Admin) dkimRetire(w http.ResponseWriter, r *http.Request) {
	name, sel := normAddr(r.PathValue("name")), r.PathValue("selector")
	if _, ok := a.propose(w, r, storage.CmdDKIMRetire, storage.DKIMRetire{Domain: name, Selector: sel}); ok {
		writeJSON(w, http.StatusOK, map[string]string{"retired": sel, "domain": name})
	}
}
