// Package maglev computes Maglev lookup tables (Eisenbud et al., NSDI 2016)
// for the north-south frontends that balance by consistent hashing, and
// writes them for the XDP program (bpf/lib/maglev.h).
//
// A table depends only on the backends' addresses and the table size, so
// every node computes the same one and picks the same backend for a flow
// without sharing any state; a change of N backends by one moves about 1/N
// of the table's entries. The XDP program hashes a flow's tuple (FlowHash
// here mirrors it) to an entry, which names the slot of the frontend's
// default scope to use; a frontend without a table balances at random.
package maglev
