"""Protocol code without sockets: bytes in, events out (HTTP/1.1 responses, HTTP/2 framing, gRPC status)."""
