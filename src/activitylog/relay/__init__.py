"""The stream relay: a follower of each stream's account log that delivers its entries (and, in unfiltered
streams, checkpoints) to webhooks and NATS JetStream, in seq order, at least once, with stable ids."""
