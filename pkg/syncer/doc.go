// Package syncer makes the pinned BPF maps hold a desired state.
//
// It keeps a mirror of what the maps hold (restored from the maps themselves
// when the agent starts, so ids survive restarts and nothing is flushed),
// diffs the desired state against it and writes only the difference.
//
// A sync is two steps. The planner (plan.go) is pure: from the desired state
// and the mirror it allocates ids, lays out slots, checks that the new
// entries fit, and returns an ordered list of map operations, already in map
// values (translate.go is the one place desired values become map values).
// The applier (apply.go) runs the list, one batch per stage, updating the
// mirror as each operation succeeds. An operation that fails fails its
// frontend, with an error naming the Service and frontend: the frontend's
// later operations are skipped, everything else goes on, and the next sync
// retries.
//
// # Order
//
// A connecting socket reads the default scope's master entry (slot 0), then
// one of its slots 1..count+terminating, then the backend that slot names;
// rev_nat and the name are read by service id. When the master carries
// FlagTwoScopes, node-local clients read the internal scope's master and
// slots instead. A packet arriving at XDP reads the default master and, when
// it carries FlagSourceRanges, the source ranges of its service id, and for
// a remote backend the node config. The plan's stages keep every one of
// those reads satisfied between any two operations, for every prefix of a
// plan:
//
//  1. the node config, before any NodePort master that may need SNAT;
//  2. backends, before any slot names them;
//  3. rev_nat and names, so a translated socket can always be shown its VIP;
//  4. slots of every scope, before the master that makes them reachable
//     (a slot rewritten in place names a backend that exists already);
//  5. source ranges a master is to read, before it (a master with
//     FlagSourceRanges and none of its ranges would drop every client);
//  6. internal masters, before a default master that sends clients to them;
//  7. default masters: the moment the new backend set becomes visible;
//  8. removals in the reverse order: default masters, internal masters,
//     source ranges, slots, rev_nat and names, backends.
//
// Hence going from one scope to two writes the internal slots and master
// before the default master gets FlagTwoScopes, and going from two scopes to
// one rewrites the default master without FlagTwoScopes before the internal
// master goes, and the internal master before its slots. Likewise, changing
// a frontend's source ranges adds the new ones before and removes the old
// ones after its master is rewritten, so a client allowed before and after
// the sync is never dropped in between.
//
// # Ids
//
// Both scopes of a frontend share one service id, because rev-NAT is per
// frontend. The mirror counts the scopes holding each id: removing one scope
// keeps the id and its rev_nat and name entries, removing the frontend frees
// them. A backend is deleted once no slot names it. Source ranges are keyed
// by service id, so an id with ranges left is not handed out again.
package syncer
