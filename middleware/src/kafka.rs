//! kafka transport (in progress)
