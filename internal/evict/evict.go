// Package evict bounds the in-memory caches kept as plain maps: when one
// is full, arbitrary entries go (Go's map iteration order), which costs
// nothing to keep track of and suits caches whose misses are only slower.
package evict

// Arbitrary deletes arbitrary entries of m until it holds at most keep.
func Arbitrary[M ~map[K]V, K comparable, V any](m M, keep int) {
	drop := len(m) - max(keep, 0)
	for k := range m {
		if drop <= 0 {
			return
		}
		delete(m, k)
		drop--
	}
}
