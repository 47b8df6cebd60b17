//! nats transport (in progress)
