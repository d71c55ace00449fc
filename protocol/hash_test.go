package protocol

import "testing"

func TestHashIdentifier(t *testing.T) {
	// printf 'saltana@example.com' | sha256sum
	if got, want := HashIdentifier("salt", "ana@example.com"), "cf4f4850c663088f794408ad621b6e8b91ee01940f6d286ee082d3bd8c3970d9"; got != want {
		t.Fatalf("HashIdentifier = %q, want %q", got, want)
	}
	if HashIdentifier("a", "b") == HashIdentifier("b", "a") {
		t.Fatal("salt and value interchangeable")
	}
}
