// Package ops is the operator's surface of a Raftmail node: the admin HTTP
// API (token-protected) that the CLI talks to, health and Prometheus
// metrics, and the client side of that API.
//
// It may import cluster and storage. It holds no mail protocol logic and
// never reads files or environment variables: cmd passes everything in.
package ops
