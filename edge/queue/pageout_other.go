//go:build !linux

package queue

const pageOutSupported = false

func pageOut(string) (int64, error) { return 0, ErrPageOutUnsupported }
