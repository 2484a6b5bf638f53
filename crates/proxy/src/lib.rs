//! The data plane: listeners, HTTP, TCP, TLS, routing, load balancing, admin.
