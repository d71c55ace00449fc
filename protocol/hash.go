package protocol

import (
	"crypto/sha256"
	"encoding/hex"
)

// HashIdentifier returns the value under which personal identifiers (e-mail,
// phone) travel to the edges when the tenant's privacy policy hashes them:
// the lower-case hex SHA-256 of salt followed by the normalised value. The
// hub hashes snapshot identifiers and the edge hashes lookup queries with
// this same function and the same tenant salt.
func HashIdentifier(salt, value string) string {
	h := sha256.New()
	h.Write([]byte(salt))
	h.Write([]byte(value))
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0]))
}
