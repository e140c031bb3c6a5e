//go:build !chaos_blob_one

package cluster

// blobOne is true only in a binary built with -tags chaos_blob_one: the
// chaos suite's negative control for blob replication, which stores a
// message body on the accepting node alone and never repairs, so that the
// suite's checker is proven to catch a body acknowledged on one node only
// (see blobone_chaos.go). Never true in a real build.
const blobOne = false
