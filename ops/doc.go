// Package ops is the operator's surface of a Raftmail node: the admin HTTP
// API (token-protected) that the CLI talks to, health and Prometheus
// metrics, the client side of that API, and the DNS records a domain needs
// (PlanDNS) and their check (CheckDNS).
//
// It may import cluster, storage and protocol/mailauth (DKIM key generation
// and records, the DNS resolver seam). It holds no mail protocol logic and
// never reads files or environment variables: cmd passes everything in.
package ops
