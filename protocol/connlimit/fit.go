package connlimit

// Fit scales caps down, each in proportion, so that their sum is at most
// budget, and reports whether it had to. Caps that already fit are
// returned as they are. A scaled cap is at least 1, so with a budget
// smaller than the number of caps the sum is still len(caps). caps is not
// modified.
func Fit(caps []int, budget int) ([]int, bool) {
	out := append([]int(nil), caps...)
	sum := 0
	for _, c := range caps {
		sum += max(c, 0)
	}
	if sum <= budget {
		return out, false
	}
	budget = max(budget, 0)
	for i, c := range caps {
		// c*budget/sum in 64 bits: caps and budgets are descriptor
		// counts, far below 2^31 each.
		out[i] = max(int(int64(max(c, 0))*int64(budget)/int64(sum)), 1)
	}
	return out, true
}
