//go:build chaos_blob_one

package cluster

// The chaos suite's negative control (go build -tags chaos_blob_one):
// StoreBlobFrom returns once the accepting node's own copy is written,
// without copying the body to any peer, and no node fetches a missing body
// in the background (reads still fetch on demand). This breaks DESIGN.md's
// promise on purpose: a body acknowledged and then lost with its only
// node (killed and wiped right after its 250) is gone, and chaos's
// no-lost-ack check must say so. Never build a release with it.
const blobOne = true
