//! FileSync client connection: TLS with a pinned certificate, handshake, and many requests in flight on one connection.
