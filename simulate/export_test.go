package simulate

import (
	"context"
	"time"
)

// SetSleep replaces the sender's wait between attempts.
func SetSleep(s *Sender, f func(ctx context.Context, d time.Duration) error) { s.sleep = f }
