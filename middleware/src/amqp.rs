//! amqp transport (in progress)
