package chaos

// Disk faults other than a full tmpfs: each node's data directory is a
// faultfs mount (chaos/faultfs) served by the chaos process itself, over a
// backing directory next to it (<Dir>/nodeN.faultfs). The mount makes the
// node's writes and fsyncs stall or fail, and at a power loss throws away
// everything the node wrote without an fsync (faultfs's package comment
// has the durability model: ModelJournal, ext4-like for names, stricter
// than ext4 for data).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/raftmail/raftmail/chaos/faultfs"
)

// DiskFaulter is a Cluster whose nodes' data directories are on faultfs
// mounts (LaunchOptions.FaultFS): the process backend as root.
type DiskFaulter interface {
	// StallDisk makes the node's operations in ops wait d each (d <= 0:
	// until HealDisk).
	StallDisk(node string, ops faultfs.Op, d time.Duration) error
	// FailDisk makes them fail with errno (EIO; ENOSPC, and statfs then
	// reports the disk full).
	FailDisk(node string, ops faultfs.Op, errno syscall.Errno) error
	// HealDisk ends the node's stalls and failures.
	HealDisk(node string) error
	// PowerLoss kills the node with SIGKILL (if it runs) and drops every
	// write it had not made durable with fsync, as a power cut would;
	// Start boots it again.
	PowerLoss(node string) (faultfs.Loss, error)
}

var _ DiskFaulter = (*procCluster)(nil)

// faultFSAvailable: nil if this process can serve faultfs mounts.
func faultFSAvailable() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("disk faults mount a FUSE file system, which needs root: %w", ErrNotSupported)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("disk faults mount a FUSE file system, and there is no /dev/fuse (%v): %w", err, ErrNotSupported)
	}
	return nil
}

// mountFaultFS puts n's data directory on a faultfs mount when asked and
// possible; otherwise the scenarios that need it are skipped.
func (c *procCluster) mountFaultFS(n *procNode) error {
	if !c.opts.FaultFS {
		return nil
	}
	if err := faultFSAvailable(); err != nil {
		c.logf("chaos: %s: %v", n.info.Name, err)
		return nil
	}
	backing := n.dataDir + ".faultfs"
	if err := launchEmptyDir(backing); err != nil {
		return err
	}
	f, err := faultfs.Mount(n.dataDir, backing, faultfs.Options{Model: faultfs.ModelJournal, Name: "raftmail-chaos-" + n.info.Name})
	if err != nil {
		c.logf("chaos: %s: %v: disk faults are not supported", n.info.Name, err)
		return nil
	}
	n.ffs = f
	return nil
}

// healFaultFS lets every stalled operation go on (Close, before it stops
// the nodes).
func (c *procCluster) healFaultFS() {
	for _, n := range c.nodes {
		if n.ffs != nil {
			n.ffs.Heal()
		}
	}
}

// unmountFaultFS unmounts every faultfs (lazily where busy); the nodes
// have stopped.
func (c *procCluster) unmountFaultFS() []error {
	var errs []error
	for _, n := range c.nodes {
		if n.ffs == nil {
			continue
		}
		if err := n.ffs.Close(); err != nil {
			errs = append(errs, fmt.Errorf("chaos: %s: %w", n.info.Name, err))
		}
		n.ffs = nil
	}
	return errs
}

// diskNode resolves node to one on faultfs, with faults serialized.
func (c *procCluster) diskNode(node string) (*procNode, error) {
	n, err := c.node(node)
	if err != nil {
		return nil, err
	}
	if n.ffs == nil {
		return nil, fmt.Errorf("chaos: %s's data is not on faultfs: %w", node, ErrNotSupported)
	}
	return n, nil
}

func (c *procCluster) StallDisk(node string, ops faultfs.Op, d time.Duration) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	n, err := c.diskNode(node)
	if err != nil {
		return err
	}
	n.ffs.Stall(ops, d)
	c.logf("chaos: %s's disk stalls (ops %#x, %s each; 0 = until healed)", node, ops, d)
	return nil
}

func (c *procCluster) FailDisk(node string, ops faultfs.Op, errno syscall.Errno) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	n, err := c.diskNode(node)
	if err != nil {
		return err
	}
	n.ffs.Fail(ops, errno)
	c.logf("chaos: %s's disk fails (ops %#x) with %v", node, ops, errno)
	return nil
}

func (c *procCluster) HealDisk(node string) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	n, err := c.diskNode(node)
	if err != nil {
		return err
	}
	n.ffs.Heal()
	c.logf("chaos: %s's disk healed", node)
	return nil
}

func (c *procCluster) PowerLoss(node string) (faultfs.Loss, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	n, err := c.diskNode(node)
	if err != nil {
		return faultfs.Loss{}, err
	}
	// A stalled write holds the process in the kernel; SIGKILL ends it
	// anyway (FUSE waits are killable), and Heal lets the write go on.
	n.ffs.Heal()
	c.mu.Lock()
	running := n.runningLocked()
	c.mu.Unlock()
	if running {
		if err := c.kill(n); err != nil {
			return faultfs.Loss{}, err
		}
	}
	loss, err := n.ffs.PowerLoss()
	if err != nil {
		return loss, fmt.Errorf("chaos: power loss of %s: %w", node, err)
	}
	c.logf("chaos: power loss of %s: %s", node, loss)
	return loss, nil
}

// diskFaulter is c as a DiskFaulter, or an error wrapping ErrNotSupported.
func diskFaulter(c Cluster) (DiskFaulter, error) {
	if pc, ok := c.(pairCluster); ok {
		c = pc.Cluster
	}
	d, ok := c.(DiskFaulter)
	if !ok {
		return nil, fmt.Errorf("disk faults need the process backend: %w", ErrNotSupported)
	}
	return d, nil
}

// diskStall blocks every write and fsync of node's data directory for the
// hold, then lets them go on.
func (e *Env) diskStall(ctx context.Context, c Cluster, name, node string) (Fault, error) {
	d, err := diskFaulter(c)
	if err != nil {
		return Fault{}, err
	}
	f := Fault{Name: name, Target: node, Start: time.Now()}
	if err := d.StallDisk(node, faultfs.OpWrite|faultfs.OpFsync, 0); err != nil {
		return f, err
	}
	f.Effect = time.Now()
	werr := wait(ctx, e.Hold)
	if err := d.HealDisk(node); err != nil {
		return f, err
	}
	if werr != nil {
		return f, werr
	}
	f.Heal = time.Now()
	if !e.alive(ctx, node) {
		e.Logf("chaos: %s stopped during its disk stall: starting it again", node)
		if err := c.Start(node); err != nil {
			return f, err
		}
	}
	return f, nil
}

// fsyncError makes every fsync of node's data directory fail with EIO for
// the hold. A node that stopped on it (a failed Pebble commit is fatal)
// loses what it wrote without a successful fsync, as Linux may drop the
// pages of a failed writeback, and is started again.
func (e *Env) fsyncError(ctx context.Context, c Cluster, node string) (Fault, error) {
	d, err := diskFaulter(c)
	if err != nil {
		return Fault{}, err
	}
	f := Fault{Name: "fsync EIO", Target: node, Start: time.Now()}
	if err := d.FailDisk(node, faultfs.OpFsync, syscall.EIO); err != nil {
		return f, err
	}
	f.Effect = time.Now()
	werr := wait(ctx, e.Hold)
	if err := d.HealDisk(node); err != nil {
		return f, err
	}
	if werr != nil {
		return f, werr
	}
	if e.alive(ctx, node) {
		e.Logf("chaos: %s lived through its failing fsyncs", node)
	} else {
		e.Logf("chaos: %s stopped on a failed fsync: dropping its unsynced writes and starting it again", node)
		if _, err := d.PowerLoss(node); err != nil {
			return f, err
		}
		if err := c.Start(node); err != nil {
			return f, err
		}
	}
	f.Heal = time.Now()
	return f, nil
}

// powerLoss kills node, drops its unsynced writes, holds, and boots it.
func (e *Env) powerLoss(ctx context.Context, c Cluster, name, node string) (Fault, error) {
	d, err := diskFaulter(c)
	if err != nil {
		return Fault{}, err
	}
	// The kill is the fault's effect; the roll-back happens while the
	// node is down.
	f := Fault{Name: name, Target: node, Start: time.Now()}
	loss, err := d.PowerLoss(node)
	if err != nil {
		return f, err
	}
	e.Logf("chaos: power loss of %s: %s", node, loss)
	return e.restartAfter(ctx, f, node)
}

// diskFull makes node's disk full: every write fails with ENOSPC, Pebble's
// and the Raft log's included, and statfs reports no free space. The node
// must answer 452 at MAIL or stop (expectNoSpace); it is healed after the
// hold and started again if it stopped.
func (e *Env) diskFull(ctx context.Context, c Cluster, name, node string) (Fault, error) {
	d, err := diskFaulter(c)
	if err != nil {
		return Fault{}, err
	}
	f := Fault{Name: name, Target: node, Start: time.Now()}
	if err := d.FailDisk(node, faultfs.OpWrite, syscall.ENOSPC); err != nil {
		return f, err
	}
	f.Effect = time.Now()
	err = e.expectNoSpace(ctx, node)
	if err == nil {
		err = wait(ctx, e.Hold)
	}
	if herr := d.HealDisk(node); herr != nil {
		return f, errors.Join(err, herr)
	}
	if err != nil {
		return f, err
	}
	if !e.alive(ctx, node) {
		e.Logf("chaos: %s stopped on the full disk: starting it again", node)
		if err := c.Start(node); err != nil {
			return f, err
		}
	}
	f.Heal = time.Now()
	return f, nil
}
