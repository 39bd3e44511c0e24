package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// AccountMetadataKey is the metadata key of the durable delete consumer that holds the
// fingerprint of the Edgegap account whose sessions its matchmakers delete (an opaque hash, see
// edgegap.Client.AccountFingerprint; never the API key).
const AccountMetadataKey = "bevygap.edgegap_account"

// ErrDeleteQueueAccount is returned (wrapped) by [Buckets.DeleteConsumerFor] when the delete
// queue is in use by matchmakers of another Edgegap account: a matchmaker of this account
// would take their deletions, get 404 from its own account and drop them, leaving their sessions
// live (and they would drop ours).
var ErrDeleteQueueAccount = errors.New("bus: the delete queue is in use by matchmakers of another Edgegap account")

// ErrDeleteQueueUnchecked is returned (wrapped) by [Buckets.DeleteConsumerFor] when the delete
// consumer exists with another configuration and cannot be read to check its account (the NATS
// user may lack the CONSUMER.INFO right). The caller may fall back to [Buckets.DeleteConsumer].
var ErrDeleteQueueUnchecked = errors.New("bus: the delete queue's Edgegap account cannot be checked")

// accountClaimFresh: a delete consumer recorded for another account is considered in use for
// this long after its creation, even while it is idle: its matchmaker, starting at the same
// moment, has not sent its first pull request yet (it does within milliseconds).
const accountClaimFresh = 10 * time.Second

// DeleteConsumerFor is [Buckets.DeleteConsumer] for matchmakers of one Edgegap account
// (account = its fingerprint; "" skips the check and keeps whatever fingerprint is recorded).
// The fingerprint is recorded in the consumer's metadata under [AccountMetadataKey]. When the
// consumer records another account's fingerprint and is in use — a matchmaker is pulling
// (waiting pull requests), deletions are queued or unacknowledged, or it was created less than
// 10 s ago — it returns an error wrapping [ErrDeleteQueueAccount] that names the fix (a
// distinct --bucket-prefix per account). An idle, empty consumer of another account is taken
// over (its matchmakers are gone, e.g. the same account with a rotated API key).
//
// A consumer identical to the one asked for (this account's, same settings) is bound with one
// strict create; only one with another configuration is read (CONSUMER.INFO), and when that
// read fails the error wraps [ErrDeleteQueueUnchecked].
//
// The Rust matchmaker creates the same durable with its own configuration (no metadata); that
// merely erases the record, which the next Go matchmaker writes again.
func (b *Buckets) DeleteConsumerFor(ctx context.Context, account string) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	name := b.Names.DeleteConsumerName
	for range 3 {
		cfg := deleteConsumerConfig(b.Names)
		if account != "" {
			cfg.Metadata = map[string]string{AccountMetadataKey: account}
		}
		// A strict create succeeds for a new consumer and for an identical one (a restart of
		// this account's matchmaker): no lookup needed, so no CONSUMER.INFO right either.
		c, err := b.DeleteStream.CreateConsumer(ctx, cfg)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, jetstream.ErrConsumerExists) {
			return nil, fmt.Errorf("bus: delete consumer %s: %w", name, err)
		}
		// It exists with another configuration: another account's record, none (Rust, older
		// Go) or other settings.
		c, err = b.DeleteStream.Consumer(ctx, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("%w: read delete consumer %s (does the NATS user have $JS.API.CONSUMER.INFO.%s.%s?): %w",
				ErrDeleteQueueUnchecked, name, b.Names.DeleteStream, name, err)
		}
		info := c.CachedInfo()
		recorded := info.Config.Metadata[AccountMetadataKey]
		switch {
		case account == "":
			if recorded != "" {
				cfg.Metadata = map[string]string{AccountMetadataKey: recorded}
			}
		case recorded != "" && recorded != account:
			if why := consumerInUse(info, time.Now()); why != "" {
				return nil, fmt.Errorf("%w: stream %s, durable consumer %s records Edgegap account %s, this matchmaker's is %s (%s). "+
					"Give each Edgegap account (or simulator) its own buckets and delete queue with a distinct --bucket-prefix "+
					"(BEVYGAP_MATCHMAKER_BUCKET_PREFIX), or its own NATS", ErrDeleteQueueAccount, b.Names.DeleteStream, name, recorded, account, why)
			}
		}
		c, err = b.DeleteStream.CreateOrUpdateConsumer(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("bus: delete consumer %s: %w", name, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("bus: delete consumer %s: created and deleted concurrently, several times", name)
}

// consumerInUse says why a delete consumer is in use ("" when it is idle and empty).
func consumerInUse(info *jetstream.ConsumerInfo, now time.Time) string {
	switch {
	case info.NumWaiting > 0:
		return fmt.Sprintf("%d pull requests waiting: its matchmakers are running", info.NumWaiting)
	case info.NumAckPending > 0:
		return fmt.Sprintf("%d deletions in progress", info.NumAckPending)
	case info.NumPending > 0:
		return fmt.Sprintf("%d deletions queued for it", info.NumPending)
	case now.Sub(info.Created) < accountClaimFresh:
		return "created " + now.Sub(info.Created).Round(time.Second).String() + " ago"
	}
	return ""
}
