//! http transport (in progress)
