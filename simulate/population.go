package simulate

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/unico-cdp/unico/protocol"
)

// ErrInvalidConfig is wrapped by errors about invalid options.
var ErrInvalidConfig = errors.New("invalid config")

// Shared identifier kinds, as written in the ground truth.
const (
	// SharedFamilyEmail marks an e-mail address used by every member of a
	// family.
	SharedFamilyEmail = "family_email"
	// SharedStoreCard marks a store's generic loyalty card, scanned at the
	// till for customers who have no card with them.
	SharedStoreCard = "store_generic_card"
	// SharedPOSTerminal marks the anonymous id of a POS terminal, sent with
	// cash sales without a card.
	SharedPOSTerminal = "pos_terminal"
)

// Defaults of PopulationOptions.
const (
	DefaultStores      = 10
	DefaultCountryCode = "44"
	// DefaultTerminals is the number of POS terminals per store.
	DefaultTerminals = 3
)

// PopulationOptions configures NewPopulation. Zero fields take the
// documented defaults.
type PopulationOptions struct {
	// Stores is the number of stores (default DefaultStores).
	Stores int
	// CountryCode is the calling code, without "+", that phone numbers
	// belong to and that the edge applies to national numbers (default
	// DefaultCountryCode, "44"). It must match the edge's setting.
	CountryCode string
	// Terminals is the number of POS terminals per store (default
	// DefaultTerminals).
	Terminals int
}

// Store is one physical site with its own edge agent.
type Store struct {
	// ID is the store id, "S001" and so on.
	ID string
	// GenericCard is the loyalty card kept at the till, used for customers
	// without their own ("STORE-0001-GENERIC").
	GenericCard string
	// Terminals are the anonymous ids of the store's POS terminals.
	Terminals []string
}

// Person is one synthetic customer. Identifier fields that are empty mean
// the person has no such identifier.
type Person struct {
	// Key names the person in the ground truth ("p0000001").
	Key string
	// UserID is the account id of people with an online account.
	UserID string
	// Emails are lower-case addresses; Emails[0] is the main one. A family
	// address is shared with other persons.
	Emails []string
	// FamilyEmail is set when Emails[0] is shared by a family.
	FamilyEmail bool
	// Phone is the national significant number (digits, no trunk 0).
	Phone string
	// TypoPhone is Phone with one wrong digit, as a call agent sometimes
	// types it; empty when this person's number is never mistyped.
	TypoPhone string
	// LoyaltyID is the person's own loyalty card.
	LoyaltyID string
	// DeviceID and AppAnonID are set for people with the mobile app.
	DeviceID  string
	AppAnonID string
	// BeaconID is the id the app broadcasts in stores for presence
	// sensors, 16 bytes as 32 lower-case hex digits; set with AppAnonID.
	BeaconID string
	// WebAnonIDs are the anonymous ids of the person's browsers.
	WebAnonIDs []string
	// Home is the index of the person's usual store.
	Home int
	// NeverIdentifies is set for people who never give any identifier.
	NeverIdentifies bool

	phoneNorm, typoNorm string
}

// Population is a seeded set of persons and stores.
type Population struct {
	Persons     []Person
	Stores      []Store
	CountryCode string
	shared      map[protocol.Identifier]string
}

// NewPopulation builds size persons deterministically from seed.
func NewPopulation(seed int64, size int, opts PopulationOptions) (*Population, error) {
	if size <= 0 {
		return nil, fmt.Errorf("population size %d: %w", size, ErrInvalidConfig)
	}
	if opts.Stores == 0 {
		opts.Stores = DefaultStores
	}
	if opts.Stores < 0 || opts.Stores > 9999 {
		return nil, fmt.Errorf("stores %d: must be 1 to 9999: %w", opts.Stores, ErrInvalidConfig)
	}
	if opts.CountryCode == "" {
		opts.CountryCode = DefaultCountryCode
	}
	if len(opts.CountryCode) > 4 || !allDigits(opts.CountryCode) || opts.CountryCode[0] == '0' {
		return nil, fmt.Errorf("country code %q: want 1 to 4 digits: %w", opts.CountryCode, ErrInvalidConfig)
	}
	if opts.Terminals == 0 {
		opts.Terminals = DefaultTerminals
	}
	if opts.Terminals < 0 {
		return nil, fmt.Errorf("terminals %d: %w", opts.Terminals, ErrInvalidConfig)
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x706f70))
	p := &Population{
		Persons:     make([]Person, size),
		Stores:      make([]Store, opts.Stores),
		CountryCode: opts.CountryCode,
		shared:      make(map[protocol.Identifier]string),
	}
	for i := range p.Stores {
		s := &p.Stores[i]
		s.ID = fmt.Sprintf("S%03d", i+1)
		s.GenericCard = fmt.Sprintf("STORE-%04d-GENERIC", i+1)
		p.shared[protocol.Identifier{Type: protocol.IDLoyaltyID, Value: s.GenericCard}] = SharedStoreCard
		for t := range opts.Terminals {
			id := fmt.Sprintf("pos-%s-t%d", s.ID, t+1)
			s.Terminals = append(s.Terminals, id)
			p.shared[protocol.Identifier{Type: protocol.IDAnonymousID, Value: id}] = SharedPOSTerminal
		}
	}
	phones := make(map[string]bool, size)
	newPhone := func() string {
		for {
			n := "7" + fmt.Sprintf("%09d", rng.IntN(1_000_000_000))
			if !phones[n] {
				phones[n] = true
				return n
			}
		}
	}
	family := 0 // members still to join the current family
	familyEmail := ""
	for i := range p.Persons {
		per := &p.Persons[i]
		per.Key = fmt.Sprintf("p%07d", i+1)
		per.Home = rng.IntN(opts.Stores)
		first := firstNames[rng.IntN(len(firstNames))]
		last := lastNames[rng.IntN(len(lastNames))]
		per.WebAnonIDs = []string{fmt.Sprintf("web-%07d-%08x", i+1, rng.Uint32())}
		if rng.IntN(10) < 3 {
			per.WebAnonIDs = append(per.WebAnonIDs, fmt.Sprintf("web-%07d-%08x", i+1, rng.Uint32()))
		}
		if family == 0 && rng.IntN(100) < 8 {
			family = 2 + rng.IntN(3)
			familyEmail = fmt.Sprintf("the.%s.family%d@%s", last, i+1, domains[rng.IntN(len(domains))])
			p.shared[protocol.Identifier{Type: protocol.IDEmail, Value: familyEmail}] = SharedFamilyEmail
		}
		if family > 0 {
			// Family members all use the shared address; some have their
			// own as well.
			family--
			per.Emails = []string{familyEmail}
			per.FamilyEmail = true
			if rng.IntN(2) == 0 {
				per.Emails = append(per.Emails, personalEmail(rng, first, last, i))
			}
		} else if rng.IntN(100) < 8 {
			per.NeverIdentifies = true
			continue
		} else if rng.IntN(100) < 88 {
			per.Emails = []string{personalEmail(rng, first, last, i)}
			if rng.IntN(100) < 15 {
				per.Emails = append(per.Emails, fmt.Sprintf("%s%d@work.example.org", first, i+1))
			}
		}
		if rng.IntN(100) < 50 {
			per.UserID = "u" + strconv.Itoa(1_000_000+i)
		}
		if rng.IntN(100) < 70 {
			per.Phone = newPhone()
			per.phoneNorm, _ = protocol.NormalizePhone("+"+opts.CountryCode+per.Phone, opts.CountryCode)
			if rng.IntN(100) < 10 {
				for {
					b := []byte(per.Phone)
					pos := 1 + rng.IntN(len(b)-1)
					b[pos] = '0' + byte((int(b[pos]-'0')+1+rng.IntN(9))%10)
					if !phones[string(b)] {
						per.TypoPhone = string(b)
						phones[per.TypoPhone] = true
						break
					}
				}
				per.typoNorm, _ = protocol.NormalizePhone("+"+opts.CountryCode+per.TypoPhone, opts.CountryCode)
			}
		}
		if rng.IntN(100) < 60 {
			per.LoyaltyID = fmt.Sprintf("63%08d%02d", i+1, rng.IntN(100))
		}
		if rng.IntN(100) < 35 {
			per.DeviceID = fmt.Sprintf("dev-%07d-%08x", i+1, rng.Uint32())
			per.AppAnonID = fmt.Sprintf("app-%07d-%08x", i+1, rng.Uint32())
			per.BeaconID = beaconID(per.AppAnonID)
		}
	}
	return p, nil
}

// Shared reports whether id is shared by several persons on purpose, and
// how (SharedFamilyEmail, SharedStoreCard or SharedPOSTerminal).
func (p *Population) Shared(id protocol.Identifier) (string, bool) {
	k, ok := p.shared[id]
	return k, ok
}

// beaconID derives the app's beacon id from its installation id, so that
// adding it draws nothing from the population's random sequence.
func beaconID(appAnonID string) string {
	sum := sha256.Sum256([]byte("beacon:" + appAnonID))
	return hex.EncodeToString(sum[:16])
}

func personalEmail(rng *rand.Rand, first, last string, i int) string {
	d := domains[rng.IntN(len(domains))]
	switch rng.IntN(3) {
	case 0:
		return fmt.Sprintf("%s.%s%d@%s", first, last, i+1, d)
	case 1:
		return fmt.Sprintf("%c%s%d@%s", first[0], last, i+1, d)
	default:
		return fmt.Sprintf("%s_%d@%s", first, i+1, d)
	}
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

var firstNames = []string{"ana", "ben", "chloe", "david", "emma", "farah", "george", "hana", "isaac", "jade",
	"kofi", "lucy", "mohammed", "nina", "oliver", "priya", "quinn", "rosa", "sam", "tariq", "uma", "victor", "wei", "yusuf", "zoe"}

var lastNames = []string{"smith", "jones", "patel", "williams", "brown", "taylor", "khan", "davies", "evans", "wilson",
	"thomas", "roberts", "johnson", "lewis", "walker", "robinson", "wood", "thompson", "white", "okafor"}

var domains = []string{"example.com", "example.net", "example.org", "mail.example.com"}
