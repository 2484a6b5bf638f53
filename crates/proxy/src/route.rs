//! Route tables compiled from RDS: virtual hosts, matches and actions.
