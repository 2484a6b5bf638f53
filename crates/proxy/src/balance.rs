//! Load balancing over EDS endpoints.
