package cluster

import "sort"

// LiveNodes returns, sorted, the names of the Raft voters that gossip
// reports alive, this node included when it is a voter. protocol/delivery
// spreads queue leases over them. It is empty when the configuration
// cannot be read (Raft shutting down).
func (n *Node) LiveNodes() []string {
	voters, err := n.voters()
	if err != nil {
		return nil
	}
	alive := make(map[string]bool)
	for _, m := range n.Members() {
		if m.State == "alive" {
			alive[m.Name] = true
		}
	}
	out := make([]string, 0, len(voters))
	for id := range voters {
		if id == n.cfg.NodeName || alive[id] {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}
