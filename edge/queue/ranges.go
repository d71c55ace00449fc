package queue

import (
	"slices"
	"sort"
)

// span is an inclusive range of seqs.
type span struct{ first, last uint64 }

// seqRanges is the index of the queued seqs of one channel, as sorted,
// disjoint spans. A span never covers a queued seq of another channel.
type seqRanges struct{ spans []span }

// add records seq, which is above every seq already recorded.
func (r *seqRanges) add(seq uint64) {
	if n := len(r.spans); n > 0 && r.spans[n-1].last+1 == seq {
		r.spans[n-1].last = seq
		return
	}
	r.spans = append(r.spans, span{seq, seq})
}

// subtract removes first..last.
func (r *seqRanges) subtract(first, last uint64) {
	s := r.spans
	i := sort.Search(len(s), func(i int) bool { return s[i].last >= first })
	j := i
	var keep [2]span
	k := 0
	for j < len(s) && s[j].first <= last {
		if s[j].first < first {
			keep[k] = span{s[j].first, first - 1}
			k++
		}
		if s[j].last > last {
			keep[k] = span{last + 1, s[j].last}
			k++
		}
		j++
	}
	if i == j {
		return
	}
	if i == 0 && k == 0 {
		r.spans = s[j:]
		return
	}
	r.spans = slices.Replace(s, i, j, keep[:k]...)
}

// count returns how many seqs the spans cover (for tests).
func (r *seqRanges) count() uint64 {
	var n uint64
	for _, s := range r.spans {
		n += s.last - s.first + 1
	}
	return n
}
