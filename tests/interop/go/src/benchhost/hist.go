package main

import (
	"math"
	"math/bits"
)

// histogram counts latencies in microseconds in log-linear buckets: every
// value below 256 has its own bucket, and each power of two above is split
// into 128 equal buckets, so a bucket's width is at most 1/128 (0.8 %) of its
// lowest value. Memory is bounded: the bucket array grows to the highest
// bucket used, at most maxBuckets (values beyond maxValue, 12.7 days, are
// clamped). A percentile is the highest value of its bucket (never below the
// true value, at most 0.8 % above it), capped at the largest value recorded.
type histogram struct {
	counts []uint64
	total  uint64
	max    uint64
	sum    float64
}

const (
	subBits    = 7
	subCount   = 1 << subBits  // 128 buckets per power of two
	exact      = 2 * subCount  // 0..255: one bucket per value
	maxExp     = 40            // values below 2^40 µs are bucketed
	maxValue   = 1<<maxExp - 1 // larger values are clamped to this
	maxBuckets = exact + (maxExp-8)*subCount
)

// bucketOf returns the bucket index of v (v <= maxValue).
func bucketOf(v uint64) int {
	if v < exact {
		return int(v)
	}
	k := bits.Len64(v) - 1 // 8 <= k < maxExp
	shift := uint(k - subBits)
	return exact + (k-8)*subCount + int(v>>shift) - subCount
}

// highestOf returns the highest value that falls in bucket i.
func highestOf(i int) uint64 {
	if i < exact {
		return uint64(i)
	}
	j := i - exact
	k := j/subCount + 8
	shift := uint(k - subBits)
	low := uint64(subCount+j%subCount) << shift
	return low + (1 << shift) - 1
}

func (h *histogram) record(v uint64) {
	if v > maxValue {
		v = maxValue
	}
	i := bucketOf(v)
	if i >= len(h.counts) {
		h.grow(i)
	}
	h.counts[i]++
	h.total++
	h.sum += float64(v)
	if v > h.max {
		h.max = v
	}
}

func (h *histogram) grow(i int) {
	n := (i/subCount + 1) * subCount
	if n > maxBuckets {
		n = maxBuckets
	}
	c := make([]uint64, n)
	copy(c, h.counts)
	h.counts = c
}

func (h *histogram) merge(o *histogram) {
	if len(o.counts) > len(h.counts) {
		h.grow(len(o.counts) - 1)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.sum += o.sum
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile returns the value at quantile q (0..1); 0 when empty.
func (h *histogram) quantile(q float64) uint64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	if rank < 1 {
		rank = 1
	}
	if rank > h.total {
		rank = h.total
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := highestOf(i)
			if v > h.max {
				v = h.max
			}
			return v
		}
	}
	return h.max
}

func (h *histogram) mean() float64 {
	if h.total == 0 {
		return 0
	}
	return h.sum / float64(h.total)
}
